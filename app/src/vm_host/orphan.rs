//! What a VM process does when no app is attached: after a grace period (the app died, or
//! never connected) it presses the guest's ACPI power button, and if the guest has not shut
//! down after a further wait it turns the VM off. A VM process never runs on without an app.
//! An app that attaches during the grace period, or during the wait, stops the countdown.

use super::hub::Hub;
use emu::control::VmController;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a VM process waits for an app, and for its guest to shut down.
#[derive(Clone, Copy, Debug)]
pub struct OrphanPolicy {
    /// No app for this long: press the power button.
    pub grace: Duration,
    /// Still running this long after the press: turn it off.
    pub shutdown: Duration,
}

/// Watches for an app until the hub closes; run on a thread of its own.
pub fn watch(hub: Arc<Hub>, controller: VmController, policy: OrphanPolicy) {
    let mut pressed: Option<Instant> = None;
    let mut forced = false;
    while !hub.is_closed() {
        std::thread::sleep(Duration::from_millis(200));
        let Some(since) = hub.detached_since() else {
            if pressed.take().is_some() {
                log::info!("an app attached again; the VM keeps running");
            }
            continue;
        };
        match pressed {
            None if since.elapsed() >= policy.grace => {
                log::warn!(
                    "no app attached for {} s: pressing the guest's power button",
                    policy.grace.as_secs()
                );
                controller.power_down();
                pressed = Some(Instant::now());
            }
            Some(at) if at.elapsed() >= policy.shutdown && !forced => {
                log::warn!(
                    "the guest did not shut down within {} s of the power button: turning it off",
                    policy.shutdown.as_secs()
                );
                controller.quit();
                forced = true;
            }
            _ => {}
        }
    }
}
