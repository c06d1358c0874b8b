//! The instructions Cove recovers from, as a closed set: what the handlers classify into, the
//! recovery entry point reports, and the statistics count.

use std::fmt;

/// The instructions Cove recovers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecoveredKind {
    Int3,
    Fwait,
    Ldmxcsr,
    Stmxcsr,
    Lfence,
    Sfence,
    Mfence,
    Verw,
    Clac,
    Stac,
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
