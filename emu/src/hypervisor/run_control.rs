//! Run, pause and stop coordination between the machine and its vCPU threads.
//!
//! vCPU threads check [`RunControl::checkpoint`] before every `KVM_RUN`. To make a thread that is
//! inside the guest notice a change, the machine kicks it with a signal, which ends `KVM_RUN`
//! with `EINTR`. A kick can land just before a thread enters the guest and be lost, so the
//! machine repeats it until every thread has acknowledged (parked or exited).

use parking_lot::{Condvar, Mutex};
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::thread::JoinHandle;
use std::time::Duration;

/// What the vCPUs should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// vCPUs enter the guest.
    Running,
    /// vCPUs park in [`RunControl::checkpoint`] until the state changes.
    Paused,
    /// vCPU threads exit; final, later [`RunControl::set_state`] calls are ignored.
    Stopping,
}

/// Shared between the machine and its vCPU threads.
pub struct RunControl {
    state: Mutex<RunState>,
    changed: Condvar,
    parked: AtomicUsize,
}

impl Default for RunControl {
    fn default() -> Self {
        Self {
            state: Mutex::new(RunState::Running),
            changed: Condvar::new(),
            parked: AtomicUsize::new(0),
        }
    }
}

impl RunControl {
    /// The current state.
    pub fn state(&self) -> RunState {
        *self.state.lock()
    }

    /// Changes the state (unless already `Stopping`) and wakes parked vCPUs; does not kick them.
    pub fn set_state(&self, state: RunState) {
        let mut current = self.state.lock();
        // Stopping is final.
        if *current != RunState::Stopping {
            *current = state;
        }
        self.changed.notify_all();
    }

    /// Called by a vCPU thread before entering the guest. Parks while paused; returns false when
    /// the thread should exit.
    pub fn checkpoint(&self) -> bool {
        let mut state = self.state.lock();
        if *state == RunState::Paused {
            self.parked.fetch_add(1, Ordering::SeqCst);
            while *state == RunState::Paused {
                self.changed.wait(&mut state);
            }
            self.parked.fetch_sub(1, Ordering::SeqCst);
        }
        *state == RunState::Running
    }

    /// Number of vCPU threads parked by a pause.
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::SeqCst)
    }
}

/// The signal that kicks a vCPU thread out of `KVM_RUN`.
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the (empty) kick handler once per process, so the signal interrupts `KVM_RUN`
/// instead of killing the process.
pub fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Err(e) = vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick) {
            log::error!("cannot install the vCPU kick signal handler: {e}");
        }
    });
}

/// Sends the kick signal to a vCPU thread.
pub fn kick(handle: &JoinHandle<()>) {
    let thread = handle.as_pthread_t();
    // SAFETY: the JoinHandle keeps the thread joinable, so its pthread_t is valid; the signal has
    // a handler installed by `install_kick_handler`.
    unsafe {
        libc::pthread_kill(thread, kick_signal());
    }
}

/// Kicks `handles` until `done` is true, then returns. Gives up after `timeout`.
pub fn kick_until(handles: &[JoinHandle<()>], timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while !done() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        for handle in handles.iter().filter(|h| !h.is_finished()) {
            kick(handle);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn pause_parks_and_stop_releases() {
        let control = Arc::new(RunControl::default());
        control.set_state(RunState::Paused);
        let c = control.clone();
        let t = std::thread::spawn(move || c.checkpoint());
        let start = std::time::Instant::now();
        while control.parked() == 0 && start.elapsed() < Duration::from_secs(5) {
            std::thread::yield_now();
        }
        assert_eq!(control.parked(), 1);
        control.set_state(RunState::Stopping);
        assert!(!t.join().unwrap());
        control.set_state(RunState::Running);
        assert_eq!(control.state(), RunState::Stopping, "stopping is final");
    }

    #[test]
    fn kick_interrupts_a_blocking_call() {
        install_kick_handler();
        let handle = std::thread::spawn(|| {
            // SAFETY: pause(2) blocks until a signal handler runs; nothing else is involved.
            unsafe { libc::pause() };
        });
        assert!(kick_until(
            std::slice::from_ref(&handle),
            Duration::from_secs(5),
            || handle.is_finished()
        ));
        handle.join().unwrap();
    }
}
