//! The `quire` binary: parse the command line, run a subcommand.
//!
//! The allocator is chosen here, for the binary only (tests and the library
//! keep the system allocator). Measured under a hostile mix, the system
//! allocator keeps most of a burst's peak for good; see `Cargo.toml`'s
//! features and the hardening scenario `tests/hardening/memory.py`.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // jemalloc returns freed pages to the system only from its own
    // threads' activity unless background threads purge them.
    #[cfg(feature = "jemalloc")]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("cannot start jemalloc's background threads: {e}");
    }
    quire::cli::main()
}
