//! Links GCC's unwinder statically (`libgcc_eh.a`) on glibc targets, so that the binary does
//! not load `libgcc_s.so.1`. claude-cage aborts on panic and only prints backtraces with the
//! unwinder; loading the shared library costs every run its mapping, its relocations and the
//! CPU detection of its constructor (12 CPUID instructions, each a trap to the hypervisor on a
//! virtual machine): 0.13 ms of a cage's start on the host of docs/benchmarks.md. The archive
//! comes before the standard library's `-lgcc_s` on the link line, and `--as-needed` then drops
//! the shared library. A static build (`+crt-static`) links the archive already.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let gnu = std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "gnu");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|o| o == "linux");
    let crt_static = std::env::var("CARGO_CFG_TARGET_FEATURE")
        .is_ok_and(|f| f.split(',').any(|f| f == "crt-static"));
    if gnu && linux && !crt_static {
        println!("cargo::rustc-link-lib=static:-bundle=gcc_eh");
    }
}
