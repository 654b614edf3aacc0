//! The `quire` binary: parse the command line, run a subcommand.
//!
//! The allocator is chosen here, for the binary only (the library and its
//! tests keep the system allocator): jemalloc by default, tuned to give
//! memory back. Measured with the hostile mix of
//! `tests/hardening/memory.py`, the system allocator and mimalloc keep most
//! of a burst resident for good (see the `[features]` of `Cargo.toml`).

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    #[cfg(feature = "jemalloc")]
    return_memory_promptly();
    quire::cli::main()
}

/// jemalloc keeps freed pages for 10 s by default and purges them only on
/// its own threads' activity: a burst of large answers would stay resident
/// long after. Freed pages are returned within about a second instead, by
/// background threads. Set before the runtime starts, so the arenas its
/// threads create take the new default.
#[cfg(feature = "jemalloc")]
fn return_memory_promptly() {
    use tikv_jemalloc_ctl::{Access, AsName};
    let settings: [(&[u8], isize); 4] = [
        (b"arenas.dirty_decay_ms\0", 1000),
        (b"arenas.muzzy_decay_ms\0", 0),
        (b"arena.0.dirty_decay_ms\0", 1000),
        (b"arena.0.muzzy_decay_ms\0", 0),
    ];
    for (name, value) in settings {
        if let Err(e) = name.name().write(value) {
            eprintln!("jemalloc setting {}: {e}", String::from_utf8_lossy(name));
        }
    }
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("cannot start jemalloc's background threads: {e}");
    }
}
