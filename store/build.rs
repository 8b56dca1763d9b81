// `sqlx::migrate!` embeds the migrations when this crate compiles; without this, a new
// migration file does not rebuild the crate and the service runs without it.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
