//! What one guest call may use: linear memory and compute (wasmtime fuel). A Dockerfile built
//! to make the interpreter spin or balloon stops with an error that says which bound it hit,
//! instead of holding the build or the machine.
//!
//! The defaults are far above what real instructions use: a 20,000-file COPY spends between
//! 10^8 and 10^9 units of fuel, so the default admits millions of files per instruction.
//! `KILN_GUEST_MEMORY_MB` and `KILN_GUEST_FUEL` change them.

use wasmtime::{ResourceLimiter, Trap};

/// Linear memory one call may grow to.
const DEFAULT_MEMORY_MB: usize = 1024;
/// Fuel (roughly, Wasm instructions) one call may spend.
const DEFAULT_FUEL: u64 = 200_000_000_000;

/// The bounds of one call, and whether the guest ran into the memory one.
pub(super) struct GuestLimits {
    memory: usize,
    pub fuel: u64,
    memory_denied: bool,
}

impl GuestLimits {
    pub fn from_env() -> GuestLimits {
        fn number<N: std::str::FromStr>(name: &str) -> Option<N> {
            std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
        }
        GuestLimits {
            memory: number("KILN_GUEST_MEMORY_MB").unwrap_or(DEFAULT_MEMORY_MB) << 20,
            fuel: number("KILN_GUEST_FUEL").unwrap_or(DEFAULT_FUEL),
            memory_denied: false,
        }
    }

    /// Says which bound a trap came from, when it came from one.
    pub fn explain(&self, trap: wasmtime::Error) -> wasmtime::Error {
        if trap.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel) {
            return trap.context(format!(
                "the instruction used up the interpreter's compute budget ({} units; KILN_GUEST_FUEL raises it)",
                self.fuel
            ));
        }
        if self.memory_denied {
            return trap.context(format!(
                "the instruction needed more than the interpreter's {} MiB of memory (KILN_GUEST_MEMORY_MB raises it)",
                self.memory >> 20
            ));
        }
        trap
    }
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory;
        self.memory_denied |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}
