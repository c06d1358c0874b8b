//! How a virtio device interrupts the driver: through its queue's MSI-X vector when the driver
//! enabled MSI-X, otherwise by setting the ISR status and raising INTx. Shared by the
//! transport (which owns the registers) and the device's worker threads.

use super::status;
use crate::interrupt::SharedLine;
use crate::pci::msix::{Msix, NO_VECTOR};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU8, Ordering};
use std::sync::Arc;

/// ISR status bits (virtio 1.2, 4.1.4.5); `virtio-bindings` has no PCI transport header.
const ISR_QUEUE: u8 = 1;
const ISR_CONFIG: u8 = 2;

/// The interrupt state of one virtio function.
pub struct VirtioInterrupt {
    msix: Arc<Mutex<Msix>>,
    queue_vectors: Vec<AtomicU16>,
    config_vector: AtomicU16,
    isr: AtomicU8,
    intx: Mutex<Option<SharedLine>>,
    intx_disabled: AtomicBool,
    device_status: Arc<AtomicU8>,
}

impl VirtioInterrupt {
    /// Interrupts for `queues` queues through `msix`, reading the status byte in `device_status`.
    pub fn new(msix: Arc<Mutex<Msix>>, queues: usize, device_status: Arc<AtomicU8>) -> Self {
        Self {
            msix,
            queue_vectors: (0..queues).map(|_| AtomicU16::new(NO_VECTOR)).collect(),
            config_vector: AtomicU16::new(NO_VECTOR),
            isr: AtomicU8::new(0),
            intx: Mutex::new(None),
            intx_disabled: AtomicBool::new(false),
            device_status,
        }
    }

    /// The interrupt state of a function with `queues` queues, no MSI-X table and no INTx line
    /// attached, whose status is already DRIVER_OK: signals only set the ISR bits. For running a
    /// device's queue service without a transport (fuzz targets, benchmarks).
    pub fn detached(queues: usize) -> Self {
        Self::new(
            Arc::new(Mutex::new(Msix::new(Vec::new()))),
            queues,
            Arc::new(AtomicU8::new(
                status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
            )),
        )
    }

    /// Whether a chain or ring the driver broke has put the function in DEVICE_NEEDS_RESET.
    pub fn needs_reset(&self) -> bool {
        self.device_status.load(Ordering::Acquire) & status::DEVICE_NEEDS_RESET != 0
    }

    /// The driver used entries of queue `index`.
    pub fn signal_queue(&self, index: u16) {
        let vector = self
            .queue_vectors
            .get(usize::from(index))
            .map_or(NO_VECTOR, |v| v.load(Ordering::Acquire));
        self.signal(vector, ISR_QUEUE);
    }

    /// The device config (or status) changed.
    pub fn signal_config(&self) {
        self.signal(self.config_vector.load(Ordering::Acquire), ISR_CONFIG);
    }

    /// Something the driver did broke the device: it stops serving until reset, and says so
    /// with DEVICE_NEEDS_RESET and a config interrupt.
    pub fn set_needs_reset(&self) {
        let previous = self
            .device_status
            .fetch_or(status::DEVICE_NEEDS_RESET, Ordering::AcqRel);
        if previous & status::DEVICE_NEEDS_RESET == 0 && previous & status::DRIVER_OK != 0 {
            self.signal_config();
        }
    }

    fn signal(&self, vector: u16, isr_bit: u8) {
        let mut msix = self.msix.lock();
        if msix.enabled() {
            // With MSI-X on, NO_VECTOR means the driver wants no interrupt for this source.
            if vector != NO_VECTOR {
                msix.notify(vector);
            }
            return;
        }
        drop(msix);
        self.isr.fetch_or(isr_bit, Ordering::AcqRel);
        self.update_intx();
    }

    /// Reading the ISR returns and clears it, and lowers INTx.
    pub fn read_isr(&self) -> u8 {
        let value = self.isr.swap(0, Ordering::AcqRel);
        self.update_intx();
        value
    }

    fn update_intx(&self) {
        let asserted =
            self.isr.load(Ordering::Acquire) != 0 && !self.intx_disabled.load(Ordering::Acquire);
        if let Some(line) = self.intx.lock().as_ref() {
            line.set_level(asserted);
        }
    }

    /// Whether INTx is asserted: the ISR is non-zero and the command register allows INTx.
    pub fn intx_asserted(&self) -> bool {
        self.isr.load(Ordering::Acquire) != 0 && !self.intx_disabled.load(Ordering::Acquire)
    }

    /// Wires the INTx pin to `line`, used while MSI-X is disabled.
    pub fn attach_intx(&self, line: SharedLine) {
        *self.intx.lock() = Some(line);
    }

    /// Mirrors the command register's INTx disable bit; deasserts the line when set.
    pub fn set_intx_disabled(&self, disabled: bool) {
        self.intx_disabled.store(disabled, Ordering::Release);
        self.update_intx();
    }

    /// The MSI-X vector of queue `index` (`NO_VECTOR` if unset or no such queue).
    pub fn queue_vector(&self, index: u16) -> u16 {
        self.queue_vectors
            .get(usize::from(index))
            .map_or(NO_VECTOR, |v| v.load(Ordering::Acquire))
    }

    /// Sets queue `index`'s MSI-X vector; an out-of-range index is ignored.
    pub fn set_queue_vector(&self, index: u16, vector: u16) {
        if let Some(v) = self.queue_vectors.get(usize::from(index)) {
            v.store(vector, Ordering::Release);
        }
    }

    /// The MSI-X vector for config changes (`config_msix_vector`).
    pub fn config_vector(&self) -> u16 {
        self.config_vector.load(Ordering::Acquire)
    }

    /// Sets the MSI-X vector for config changes.
    pub fn set_config_vector(&self, vector: u16) {
        self.config_vector.store(vector, Ordering::Release);
    }

    /// Whether `vector` exists in the MSI-X table (the transport answers NO_VECTOR otherwise).
    pub fn vector_exists(&self, vector: u16) -> bool {
        usize::from(vector) < self.msix.lock().vector_count()
    }

    /// Device reset: vectors back to none, ISR cleared, INTx low.
    pub fn reset(&self) {
        for vector in &self.queue_vectors {
            vector.store(NO_VECTOR, Ordering::Release);
        }
        self.config_vector.store(NO_VECTOR, Ordering::Release);
        self.isr.store(0, Ordering::Release);
        self.update_intx();
    }
}
