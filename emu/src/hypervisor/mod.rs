//! The KVM side of a machine: VM and vCPU wrappers, vCPU threads, exit dispatch, statistics and
//! recovery from emulation failures. Device code never calls KVM directly.

pub mod emulation;
pub mod kvm_irq;
pub mod kvm_stats;
pub mod kvm_vm;
pub mod run_control;
pub mod vcpu;
