fn main() {
    println!("hello from the ironstar benchmark payload");
}
