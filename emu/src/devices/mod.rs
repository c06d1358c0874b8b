//! Legacy platform devices: 16550 UART, i8042, CMOS/RTC, i8254 PIT, ACPI power management, the
//! reset control register and the POST debug port.

pub mod acpi_pm;
pub mod cmos;
pub mod debug_port;
pub mod i8042;
pub mod pit;
pub mod reset;
pub mod serial;

/// What a device asks of the machine when the guest powers off or resets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerRequest {
    /// The guest asked to power off (ACPI S5).
    PowerOff,
    /// The guest asked for a reset (keyboard controller, reset register, triple fault).
    Reset,
}

/// Where devices send power requests. Implemented by the machine.
pub trait PowerSink: Send + Sync {
    /// Hands `request` to the machine; devices call it while handling the guest's register write.
    fn request(&self, request: PowerRequest);
}
