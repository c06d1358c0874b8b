//! MSI and doorbells under KVM: MSI vectors are irqfds bound to GSIs whose routes carry the
//! guest-programmed MSI message, and doorbells are ioeventfds, so device workers and vCPUs
//! exchange notifications without the VMM's vCPU threads in between.

use crate::doorbell::{DoorbellError, DoorbellRegistry};
use crate::interrupt::{MsiController, MsiError, MsiMessage, MsiVector};
use kvm_bindings::{
    kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use vmm_sys_util::eventfd::EventFd;

/// IOAPIC inputs; GSIs from here on are free for MSI.
const IOAPIC_PINS: u32 = 24;
/// The most routes KVM accepts.
const MAX_ROUTES: u32 = 4096;

/// Hands out MSI vectors backed by irqfds.
pub struct KvmMsiController {
    routes: Arc<GsiRoutes>,
}

/// The VM's GSI routing table: the default irqchip routes plus one MSI route per vector.
struct GsiRoutes {
    vm: Arc<VmFd>,
    state: Mutex<RoutingState>,
}

struct RoutingState {
    next_gsi: u32,
    msi_routes: BTreeMap<u32, MsiMessage>,
}

impl KvmMsiController {
    /// A controller for `vm`, whose MSI routes take GSIs from 24, after the IOAPIC pins.
    pub fn new(vm: Arc<VmFd>) -> Self {
        Self {
            routes: Arc::new(GsiRoutes {
                vm,
                state: Mutex::new(RoutingState {
                    next_gsi: IOAPIC_PINS,
                    msi_routes: BTreeMap::new(),
                }),
            }),
        }
    }
}

impl GsiRoutes {
    fn set_route(&self, gsi: u32, message: MsiMessage) {
        let mut state = self.state.lock();
        if state.msi_routes.get(&gsi) == Some(&message) {
            return;
        }
        state.msi_routes.insert(gsi, message);
        if let Err(e) = self.commit(&state) {
            log::warn!("cannot route MSI GSI {gsi}: {e}");
        }
    }

    /// Replaces KVM's table. KVM_SET_GSI_ROUTING drops the default routes, so the PIC and
    /// IOAPIC routes KVM starts with are part of every table.
    fn commit(&self, state: &RoutingState) -> Result<(), String> {
        let mut entries = Vec::new();
        for gsi in 0..IOAPIC_PINS {
            if gsi < 16 {
                let chip = if gsi < 8 {
                    KVM_IRQCHIP_PIC_MASTER
                } else {
                    KVM_IRQCHIP_PIC_SLAVE
                };
                entries.push(irqchip_route(gsi, chip, gsi % 8));
            }
            entries.push(irqchip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi));
        }
        for (&gsi, message) in &state.msi_routes {
            let mut entry = kvm_irq_routing_entry {
                gsi,
                type_: KVM_IRQ_ROUTING_MSI,
                ..Default::default()
            };
            entry.u.msi.address_lo = message.address as u32;
            entry.u.msi.address_hi = (message.address >> 32) as u32;
            entry.u.msi.data = message.data;
            entries.push(entry);
        }
        let mut table = KvmIrqRouting::new(0).map_err(|e| format!("{e:?}"))?;
        for entry in entries {
            table.push(entry).map_err(|e| format!("{e:?}"))?;
        }
        self.vm
            .set_gsi_routing(&table)
            .map_err(|e| format!("KVM_SET_GSI_ROUTING: {e}"))
    }
}

fn irqchip_route(gsi: u32, chip: u32, pin: u32) -> kvm_irq_routing_entry {
    let mut entry = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        ..Default::default()
    };
    entry.u.irqchip.irqchip = chip;
    entry.u.irqchip.pin = pin;
    entry
}

impl MsiController for KvmMsiController {
    fn allocate_vectors(&self, count: usize) -> Result<Vec<Arc<dyn MsiVector>>, MsiError> {
        let routes = &self.routes;
        let mut vectors = Vec::with_capacity(count);
        for _ in 0..count {
            let gsi = {
                let mut state = routes.state.lock();
                if state.next_gsi >= MAX_ROUTES {
                    return Err(MsiError::TooManyRoutes { max: MAX_ROUTES });
                }
                state.next_gsi += 1;
                state.next_gsi - 1
            };
            let event = EventFd::new(libc::EFD_NONBLOCK).map_err(MsiError::EventFd)?;
            routes
                .vm
                .register_irqfd(&event, gsi)
                .map_err(|e| MsiError::Bind {
                    gsi,
                    source: e.into(),
                })?;
            vectors.push(Arc::new(KvmMsiVector {
                routes: routes.clone(),
                gsi,
                event,
            }) as Arc<dyn MsiVector>);
        }
        Ok(vectors)
    }
}

/// One MSI vector: an irqfd on its own GSI.
struct KvmMsiVector {
    routes: Arc<GsiRoutes>,
    gsi: u32,
    event: EventFd,
}

impl MsiVector for KvmMsiVector {
    fn configure(&self, message: MsiMessage) {
        self.routes.set_route(self.gsi, message);
    }

    fn trigger(&self) {
        if let Err(e) = self.event.write(1) {
            log::warn!("cannot signal MSI GSI {}: {e}", self.gsi);
        }
    }
}

impl Drop for KvmMsiVector {
    fn drop(&mut self) {
        let _ = self.routes.vm.unregister_irqfd(&self.event, self.gsi);
    }
}

/// Doorbells as KVM ioeventfds (any access width, any value).
pub struct KvmDoorbells {
    vm: Arc<VmFd>,
}

impl KvmDoorbells {
    /// Registers doorbells as ioeventfds on `vm`.
    pub fn new(vm: Arc<VmFd>) -> Self {
        Self { vm }
    }
}

impl DoorbellRegistry for KvmDoorbells {
    fn register(&self, address: u64, event: &EventFd) -> Result<(), DoorbellError> {
        self.vm
            .register_ioevent(event, &IoEventAddress::Mmio(address), NoDatamatch)
            .map_err(|e| DoorbellError::Register {
                address,
                source: e.into(),
            })
    }

    fn unregister(&self, address: u64, event: &EventFd) -> Result<(), DoorbellError> {
        self.vm
            .unregister_ioevent(event, &IoEventAddress::Mmio(address), NoDatamatch)
            .map_err(|e| DoorbellError::Unregister {
                address,
                source: e.into(),
            })
    }
}
