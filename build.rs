//! Links keepup as a position-dependent executable on Linux. A PIE's pointers in read-only
//! data are relocated at every exec: those pages (about 36 KiB) become private to each
//! process, and every waiting watcher holds a copy. Fixed addresses leave them clean, shared
//! with every other keepup through the page cache (`bench/watchers`: 210 → 175 KiB PSS per
//! watcher at 100 services).
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=keepup=-no-pie");
    }
}
