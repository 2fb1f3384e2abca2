//! What a merged config must be before it is written: of the types the OCI config schema gives
//! (`config-schema.json`), with what no runtime could use refused too (a NUL in an environment
//! variable, a newline in the user). A base's config is a stranger's JSON: a bad field is named
//! in one line, never written into a layout. The one normalisation: a `null` where the schema
//! wants an object, list or string (Docker writes `"Env": null`) is dropped, as absent.

use serde_json::{Map, Value};

use crate::digest::Digest;

/// Fields of `config` (the run config), what each must be, and whether the schema allows `null`.
const RUN_FIELDS: [(&str, Kind, bool); 10] = [
    ("User", Kind::Line, false),
    ("WorkingDir", Kind::Line, false),
    ("StopSignal", Kind::Line, false),
    ("Env", Kind::Strings, false),
    ("Entrypoint", Kind::Strings, true),
    ("Cmd", Kind::Strings, true),
    ("ExposedPorts", Kind::MapOfObjects, false),
    ("Volumes", Kind::MapOfObjects, true),
    ("Labels", Kind::MapOfStrings, true),
    ("ArgsEscaped", Kind::Bool, false),
];

/// Fields of a `history` entry.
const HISTORY_FIELDS: [(&str, Kind); 5] = [
    ("created", Kind::Time),
    ("author", Kind::Text),
    ("created_by", Kind::Text),
    ("comment", Kind::Text),
    ("empty_layer", Kind::Bool),
];

#[derive(Clone, Copy)]
enum Kind {
    /// A string without NUL or line breaks.
    Line,
    /// A string without NUL.
    Text,
    /// An RFC 3339 date-time.
    Time,
    Bool,
    /// A list of strings without NUL.
    Strings,
    MapOfObjects,
    MapOfStrings,
}

/// Drop the `null`s of the base's run config that the schema does not allow (where absent and
/// `null` mean the same to a runtime).
pub fn drop_nulls(run: &mut Map<String, Value>) {
    run.retain(|k, v| !(v.is_null() && RUN_FIELDS.iter().any(|(f, _, null)| f == k && !null)));
}

/// The first field of the merged `config` that is not what the schema says, as
/// `config.Env[2] is not a string`.
pub fn check(config: &Value) -> Result<(), String> {
    let top = config.as_object().ok_or("the config is not an object")?;
    if let Some(run) = top.get("config") {
        let run = run.as_object().ok_or("`config` is not an object")?;
        for (field, kind, nullable) in RUN_FIELDS {
            if let Some(v) = run.get(field).filter(|v| !(nullable && v.is_null())) {
                is(v, kind, &format!("config.{field}"))?;
            }
        }
    }
    let rootfs = top.get("rootfs").ok_or("it has no `rootfs`")?;
    if rootfs["type"] != "layers" {
        return Err("`rootfs.type` is not \"layers\"".into());
    }
    let diff_ids = rootfs["diff_ids"]
        .as_array()
        .ok_or("`rootfs.diff_ids` is not a list")?;
    for (i, d) in diff_ids.iter().enumerate() {
        let s = d.as_str().unwrap_or_default();
        Digest::parse(s).map_err(|_| format!("rootfs.diff_ids[{i}] is not a sha256 digest"))?;
    }
    if let Some(history) = top.get("history") {
        let list = history.as_array().ok_or("`history` is not a list")?;
        for (i, h) in list.iter().enumerate() {
            let h = h
                .as_object()
                .ok_or_else(|| format!("history[{i}] is not an object"))?;
            for (field, kind) in HISTORY_FIELDS {
                if let Some(v) = h.get(field) {
                    is(v, kind, &format!("history[{i}].{field}"))?;
                }
            }
        }
    }
    Ok(())
}

fn is(v: &Value, kind: Kind, at: &str) -> Result<(), String> {
    let text = |v: &Value, at: &str| match v.as_str() {
        None => Err(format!("{at} is not a string")),
        Some(s) if s.contains('\0') => Err(format!("{at} holds a NUL")),
        Some(s) => Ok(s.to_string()),
    };
    match kind {
        Kind::Text => text(v, at).map(drop),
        Kind::Line => match text(v, at)? {
            s if s.contains(['\n', '\r']) => Err(format!("{at} holds a line break")),
            _ => Ok(()),
        },
        Kind::Time => {
            let s = text(v, at)?;
            let rfc3339 = &time::format_description::well_known::Rfc3339;
            time::OffsetDateTime::parse(&s, rfc3339)
                .map(drop)
                .map_err(|_| format!("{at} is not an RFC 3339 date-time"))
        }
        Kind::Bool => match v.is_boolean() {
            true => Ok(()),
            false => Err(format!("{at} is not true or false")),
        },
        Kind::Strings => {
            let list = v.as_array().ok_or_else(|| format!("{at} is not a list"))?;
            for (i, s) in list.iter().enumerate() {
                text(s, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        Kind::MapOfObjects | Kind::MapOfStrings => {
            let map = v
                .as_object()
                .ok_or_else(|| format!("{at} is not an object"))?;
            for (k, item) in map {
                if k.is_empty() {
                    return Err(format!("{at} has an empty key"));
                }
                match kind {
                    Kind::MapOfObjects if !item.is_object() => {
                        return Err(format!("{at}[\"{}\"] is not an object", k.escape_debug()))
                    }
                    Kind::MapOfStrings => {
                        text(item, &format!("{at}[\"{}\"]", k.escape_debug())).map(drop)?
                    }
                    _ => {}
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_run(run: Value) -> Value {
        json!({
            "architecture": "amd64", "os": "linux", "config": run,
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", "a".repeat(64))]},
            "history": [{"created": "2024-01-02T03:04:05Z", "created_by": "x", "empty_layer": true}]
        })
    }

    #[test]
    fn a_config_of_the_schema_s_types_passes() {
        let run = json!({"Env": ["A=1"], "User": "1000:1000", "ExposedPorts": {"80/tcp": {}},
            "Volumes": {"/data": {}}, "Labels": {"a": "b"}, "Cmd": ["/bin/sh"], "ArgsEscaped": true});
        assert_eq!(check(&with_run(run)), Ok(()));
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (json!({"Env": ["A=1", 7]}), "config.Env[1] is not a string"),
            (json!({"Env": [null]}), "config.Env[0] is not a string"),
            (json!({"Env": ["A=\u{0}"]}), "config.Env[0] holds a NUL"),
            (json!({"Env": "A=1"}), "config.Env is not a list"),
            (json!({"User": "root\nx"}), "config.User holds a line break"),
            (
                json!({"ExposedPorts": "80/tcp"}),
                "config.ExposedPorts is not an object",
            ),
            (
                json!({"ExposedPorts": {"80/tcp": 1}}),
                "config.ExposedPorts[\"80/tcp\"] is not an object",
            ),
            (json!({"Volumes": 3}), "config.Volumes is not an object"),
            (
                json!({"Labels": {"a": 1}}),
                "config.Labels[\"a\"] is not a string",
            ),
        ];
        for (run, want) in cases {
            assert_eq!(
                check(&with_run(run.clone())),
                Err(want.to_string()),
                "{run}"
            );
        }
        let mut bad = with_run(json!({}));
        bad["rootfs"]["diff_ids"] = json!(["sha256:../../etc/passwd"]);
        assert_eq!(
            check(&bad),
            Err("rootfs.diff_ids[0] is not a sha256 digest".into())
        );
        let mut bad = with_run(json!({}));
        bad["history"][0]["created"] = json!("yesterday");
        assert_eq!(
            check(&bad),
            Err("history[0].created is not an RFC 3339 date-time".into())
        );
    }

    #[test]
    fn nulls_the_schema_forbids_are_dropped_others_kept() {
        let mut run = json!({"Env": null, "User": null, "Healthcheck": null, "Cmd": null});
        drop_nulls(run.as_object_mut().unwrap());
        assert_eq!(run, json!({"Healthcheck": null, "Cmd": null}));
        assert_eq!(check(&with_run(run)), Ok(()));
    }
}
