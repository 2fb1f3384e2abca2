//! Our image config over the base's, as docker builds `FROM base`: the base's environment first,
//! then ours (a variable we set replaces the base's in place); our entrypoint replaces the
//! base's, and setting it drops the base's cmd (ours, when set, is the cmd); our user, workdir
//! and stop signal replace the base's when set; exposed ports, volumes and labels are merged;
//! the base's layers and history come before ours. What we do not set (a healthcheck, a shell)
//! is the base's. The result is checked against the config schema's types ([`super::check`]).

use serde_json::{Map, Value};

use crate::image::canonical;

/// The merged config's canonical bytes; `ours` is the config ironstar made (canonical JSON). An
/// error names the field that is not what the config schema says (one of the base's).
pub fn merge(base: &Value, ours: &[u8]) -> Result<Vec<u8>, String> {
    let mut out: Value = serde_json::from_slice(ours).map_err(|e| e.to_string())?;
    let mut theirs = match &base["config"] {
        Value::Object(run) => run.clone(),
        Value::Null => Map::new(),
        _ => return Err("`config` is not an object".into()),
    };
    super::check::drop_nulls(&mut theirs);
    let mine = out["config"].as_object().cloned().unwrap_or_default();
    out["config"] = Value::Object(run_config(theirs, mine));
    for (key, list) in [("rootfs", "diff_ids"), ("history", "")] {
        let base_items = match list {
            "" => base[key].as_array(),
            l => base[key][l].as_array(),
        };
        let base_items = base_items.cloned().unwrap_or_default();
        let slot = match list {
            "" => &mut out[key],
            l => &mut out[key][l],
        };
        let mine = slot.as_array().cloned().unwrap_or_default();
        *slot = Value::Array(base_items.into_iter().chain(mine).collect());
    }
    super::check::check(&out)?;
    Ok(canonical(&out))
}

fn run_config(mut theirs: Map<String, Value>, mine: Map<String, Value>) -> Map<String, Value> {
    // ONBUILD triggers are for builds FROM this image, which this is not.
    theirs.remove("OnBuild");
    if mine.contains_key("Entrypoint") {
        theirs.remove("Cmd");
    }
    for (key, value) in mine {
        let merged = match (key.as_str(), theirs.remove(&key)) {
            ("Env", Some(Value::Array(base))) => Value::Array(env(base, value)),
            ("ExposedPorts" | "Volumes" | "Labels", Some(Value::Object(mut base))) => {
                if let Value::Object(m) = value {
                    base.extend(m);
                }
                Value::Object(base)
            }
            _ => value,
        };
        theirs.insert(key, merged);
    }
    theirs
}

/// The base's `NAME=value` list with ours applied: a name already there is replaced in place.
fn env(mut base: Vec<Value>, ours: Value) -> Vec<Value> {
    let name = |v: &Value| {
        v.as_str()
            .map(|s| s.split_once('=').map_or(s, |(k, _)| k).to_string())
    };
    for var in ours.as_array().cloned().unwrap_or_default() {
        match base.iter().position(|b| name(b) == name(&var)) {
            Some(i) => base[i] = var,
            None => base.push(var),
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_as_docker_does() {
        let (aa, bb) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        let base = json!({
            "architecture": "amd64", "os": "linux",
            "config": {
                "Env": ["PATH=/bin", "GREETING=base", "LANG=C"],
                "Cmd": ["/bin/sh"], "User": "1000", "WorkingDir": "/srv",
                "ExposedPorts": {"80/tcp": {}}, "Labels": {"a": "base", "b": "base"},
                "Healthcheck": {"Test": ["CMD", "true"]}, "OnBuild": ["RUN x"]
            },
            "rootfs": {"type": "layers", "diff_ids": [aa]},
            "history": [{"created_by": "buildah"}]
        });
        let ours = canonical(&json!({
            "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
            "config": {
                "Entrypoint": ["/app"], "Env": ["GREETING=ours", "RUST_LOG=info"],
                "ExposedPorts": {"8080/tcp": {}}, "Labels": {"b": "ours"}
            },
            "rootfs": {"type": "layers", "diff_ids": [bb]},
            "history": [{"created_by": "ironstar"}]
        }));
        let m: Value = serde_json::from_slice(&merge(&base, &ours).unwrap()).unwrap();
        let c = &m["config"];
        assert_eq!(
            c["Env"],
            json!(["PATH=/bin", "GREETING=ours", "LANG=C", "RUST_LOG=info"])
        );
        assert_eq!(c["Entrypoint"], json!(["/app"]));
        assert!(
            c.get("Cmd").is_none(),
            "our entrypoint drops the base's cmd"
        );
        assert_eq!(
            (c["User"].clone(), c["WorkingDir"].clone()),
            (json!("1000"), json!("/srv"))
        );
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "8080/tcp": {}}));
        assert_eq!(c["Labels"], json!({"a": "base", "b": "ours"}));
        assert!(c.get("Healthcheck").is_some() && c.get("OnBuild").is_none());
        assert_eq!(m["rootfs"]["diff_ids"], json!([aa, bb]));
        assert_eq!(
            m["history"],
            json!([{"created_by": "buildah"}, {"created_by": "ironstar"}])
        );
        assert_eq!(m["created"], json!("1970-01-01T00:00:00Z"));
    }
}
