//! The instructions Cove recovers from, as a closed set: what the handlers classify into, the
//! recovery entry point reports, and the statistics count.

use std::fmt;

/// The instructions Cove recovers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecoveredKind {
    /// `int3`: #BP delivered as a trap, RIP after the instruction.
    Int3,
    /// `fwait`/`wait`: #NM or #MF when the x87 state says so, otherwise nothing.
    Fwait,
    /// `ldmxcsr m32`: load MXCSR, #GP(0) for reserved bits.
    Ldmxcsr,
    /// `stmxcsr m32`: store MXCSR.
    Stmxcsr,
    /// `lfence`: retired as is (the exit already serialised).
    Lfence,
    /// `sfence`: retired as is.
    Sfence,
    /// `mfence`: retired as is.
    Mfence,
    /// `verw r/m16`: ZF by the selector's writability (the kernel's MDS buffer clearing).
    Verw,
    /// `clac`: clear RFLAGS.AC; #UD above CPL 0.
    Clac,
    /// `stac`: set RFLAGS.AC; #UD above CPL 0.
    Stac,
    /// `popcnt r, r/m`: count set bits, ZF for a zero source.
    Popcnt,
}

impl RecoveredKind {
    /// Every kind, in declaration order (the order of [`RecoveredKind::index`]).
    pub const ALL: [RecoveredKind; 11] = [
        RecoveredKind::Int3,
        RecoveredKind::Fwait,
        RecoveredKind::Ldmxcsr,
        RecoveredKind::Stmxcsr,
        RecoveredKind::Lfence,
        RecoveredKind::Sfence,
        RecoveredKind::Mfence,
        RecoveredKind::Verw,
        RecoveredKind::Clac,
        RecoveredKind::Stac,
        RecoveredKind::Popcnt,
    ];

    /// The instruction's mnemonic, e.g. `"ldmxcsr"`.
    pub fn name(self) -> &'static str {
        match self {
            RecoveredKind::Int3 => "int3",
            RecoveredKind::Fwait => "fwait",
            RecoveredKind::Ldmxcsr => "ldmxcsr",
            RecoveredKind::Stmxcsr => "stmxcsr",
            RecoveredKind::Lfence => "lfence",
            RecoveredKind::Sfence => "sfence",
            RecoveredKind::Mfence => "mfence",
            RecoveredKind::Verw => "verw",
            RecoveredKind::Clac => "clac",
            RecoveredKind::Stac => "stac",
            RecoveredKind::Popcnt => "popcnt",
        }
    }

    /// The position of this kind in [`RecoveredKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RecoveredKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
