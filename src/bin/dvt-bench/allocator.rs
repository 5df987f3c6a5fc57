//! The benchmark's memory allocator: mimalloc for the simulated cluster and the benchmark
//! itself, the system allocator (glibc's malloc) for the operator process that `scale` measures.
//!
//! The simulated cluster allocates and frees without pause (every write copies an object, every
//! watch event encodes one): with mimalloc, 1,000 × 4 on this machine took 35–37 s to its
//! ceiling instead of 44–51 s, and the process peaked at 2.7–2.9 GB instead of 3.4–3.6 GB
//! (e2e/benchmarks-log-2026-11-24-to-2026-12-06.md). The operator under measurement keeps the allocator `dvt-operator`
//! runs with, so that its RSS and CPU figures are the shipped binary's: with mimalloc it used
//! about a fifth less CPU but peaked 3–5 MiB higher (97–100 MiB, transparent huge pages off;
//! 125–131 MiB with them), too near the 100 MiB target to trade for.
//!
//! The operator runs from this same binary (`dvt-bench operator`), so the choice is made once per
//! process, at its first allocation, from [`SYSTEM_ALLOCATOR_ENV`]: set, the system allocator;
//! unset, mimalloc. The first allocation happens before `main`, on the only thread there is, and
//! the choice never changes after it, so every block is freed by the allocator that gave it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

/// Set (to anything) in a process's environment: that process allocates with the system
/// allocator. [`super::scale`] sets it for the operator process.
pub const SYSTEM_ALLOCATOR_ENV: &str = "DVT_BENCH_SYSTEM_ALLOCATOR";

/// [`SYSTEM_ALLOCATOR_ENV`] as C reads it, for `getenv` (which does not allocate).
const SYSTEM_ALLOCATOR_ENV_C: &std::ffi::CStr = c"DVT_BENCH_SYSTEM_ALLOCATOR";

/// The names the benchmark prints.
const SYSTEM_NAME: &str = "system (glibc malloc)";
const MIMALLOC_NAME: &str = "mimalloc";

/// The allocator a process of this binary uses, from its environment as `/proc/<pid>/environ`
/// holds it (`NAME=value` entries, each ended by a NUL byte).
pub fn allocator_of_environment(environ: &[u8]) -> &'static str {
    let set = environ.split(|byte| *byte == 0).any(|entry| {
        entry
            .strip_prefix(SYSTEM_ALLOCATOR_ENV.as_bytes())
            .is_some_and(|rest| rest.first() == Some(&b'='))
    });
    if set { SYSTEM_NAME } else { MIMALLOC_NAME }
}

const UNDECIDED: u8 = 0;
const SYSTEM: u8 = 1;
const MIMALLOC: u8 = 2;

/// See the module's documentation.
pub struct BenchAllocator {
    choice: AtomicU8,
}

impl BenchAllocator {
    pub const fn new() -> Self {
        BenchAllocator {
            choice: AtomicU8::new(UNDECIDED),
        }
    }

    /// Which allocator this process uses, decided at the first call.
    fn choice(&self) -> u8 {
        match self.choice.load(Ordering::Acquire) {
            UNDECIDED => {
                // SAFETY: `getenv` reads the environment without allocating; nothing in this
                // process has started a thread, so nothing writes the environment meanwhile.
                let set = unsafe { !libc::getenv(SYSTEM_ALLOCATOR_ENV_C.as_ptr()).is_null() };
                let choice = if set { SYSTEM } else { MIMALLOC };
                // Should a second thread ever race here, it reads the same environment and
                // decides the same; the first decision stands.
                match self.choice.compare_exchange(
                    UNDECIDED,
                    choice,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => choice,
                    Err(decided) => decided,
                }
            }
            decided => decided,
        }
    }

    /// The allocator's name, for the benchmark's header.
    pub fn name(&self) -> &'static str {
        if self.choice() == SYSTEM {
            SYSTEM_NAME
        } else {
            MIMALLOC_NAME
        }
    }
}

// SAFETY: every call is forwarded to one of two allocators that implement `GlobalAlloc`
// correctly, and the same one for the whole life of the process (see `choice`), so a block is
// always reallocated and freed by the allocator that allocated it.
unsafe impl GlobalAlloc for BenchAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.choice() == SYSTEM {
            unsafe { System.alloc(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if self.choice() == SYSTEM {
            unsafe { System.alloc_zeroed(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.choice() == SYSTEM {
            unsafe { System.dealloc(ptr, layout) }
        } else {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if self.choice() == SYSTEM {
            unsafe { System.realloc(ptr, layout, new_size) }
        } else {
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_c_name_is_the_environment_variable() {
        assert_eq!(SYSTEM_ALLOCATOR_ENV_C.to_str(), Ok(SYSTEM_ALLOCATOR_ENV));
    }

    #[test]
    fn a_process_started_with_the_variable_uses_the_system_allocator() {
        // The child is this test binary, running only the test that prints its choice.
        let run = |system: bool| {
            let mut command = std::process::Command::new(
                std::env::current_exe().expect("the test binary's path"),
            );
            command
                .args([
                    "--ignored",
                    "--exact",
                    "allocator::tests::print_this_process_allocator",
                ])
                .args(["--nocapture", "--test-threads", "1"])
                .env_remove(SYSTEM_ALLOCATOR_ENV);
            if system {
                command.env(SYSTEM_ALLOCATOR_ENV, "1");
            }
            let output = command.output().expect("running the test binary");
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        assert!(run(true).contains("allocator: system (glibc malloc)"));
        assert!(run(false).contains("allocator: mimalloc"));
    }

    #[test]
    fn the_allocator_is_read_from_a_process_environment() {
        let environ = |entries: &[&str]| entries.join("\0").into_bytes();
        assert_eq!(
            allocator_of_environment(&environ(&["PATH=/bin", "DVT_BENCH_SYSTEM_ALLOCATOR=1", ""])),
            SYSTEM_NAME
        );
        // Set to nothing is set.
        assert_eq!(
            allocator_of_environment(&environ(&["DVT_BENCH_SYSTEM_ALLOCATOR=", ""])),
            SYSTEM_NAME
        );
        // A longer name, or the name as a value, is not the variable.
        assert_eq!(
            allocator_of_environment(&environ(&[
                "DVT_BENCH_SYSTEM_ALLOCATOR_OLD=1",
                "X=DVT_BENCH_SYSTEM_ALLOCATOR=1",
                ""
            ])),
            MIMALLOC_NAME
        );
        assert_eq!(allocator_of_environment(b""), MIMALLOC_NAME);
    }

    /// Prints the allocator of the process it runs in: a helper the test above runs in a child
    /// process, ignored on its own.
    #[test]
    #[ignore = "run by a_process_started_with_the_variable_uses_the_system_allocator"]
    fn print_this_process_allocator() {
        println!("allocator: {}", crate::ALLOCATOR.name());
    }
}
