/// mimalloc: the proxy allocates per request, and under load glibc's malloc
/// and free were a tenth of its CPU (`docs/benchmarks.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
