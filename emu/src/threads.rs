//! Every long-lived thread of a VM has a kind ([`ThreadKind`]), and is started through
//! [`spawn`] so that a host process can confine each kind on its own (the app's VM process
//! installs a seccomp filter per kind; `cove run` installs nothing).
//!
//! A seccomp filter is inherited by the threads a thread creates, and filters only add up, so
//! a device worker started from a vCPU thread (a guest's register write activates a device)
//! would be bound by the vCPU's filter too. With a [`Spawner`] installed, threads are therefore
//! created by one spawner thread instead, whose own filter allows what any kind needs; each new
//! thread then narrows itself to its kind in the start hook.

use std::sync::mpsc::{channel, sync_channel, Sender};
use std::sync::OnceLock;
use std::thread::JoinHandle;

/// What a thread does, which decides what it may ask of the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThreadKind {
    /// Runs a vCPU: `KVM_RUN`, device register accesses, serial output.
    Vcpu,
    /// Serves a device's virtqueues: guest memory, disk I/O, eventfds.
    DeviceWorker,
    /// Everything else: building machines, the control socket, the app's link.
    Control,
}

type StartHook = Box<dyn Fn(ThreadKind) + Send + Sync>;
type Job = Box<dyn FnOnce() + Send>;

static START_HOOK: OnceLock<StartHook> = OnceLock::new();
static SPAWNER: OnceLock<Spawner> = OnceLock::new();

/// Sets what every thread started by [`spawn`] runs first, given its kind (once per process).
pub fn set_start_hook(hook: impl Fn(ThreadKind) + Send + Sync + 'static) -> bool {
    START_HOOK.set(Box::new(hook)).is_ok()
}

/// The thread that creates all others once it is installed.
pub struct Spawner {
    jobs: std::sync::Mutex<Sender<Job>>,
}

impl Spawner {
    /// Starts the spawner thread; `confine` runs on it first (its own filter). From now on
    /// [`spawn`] creates threads there. Once per process.
    pub fn install(confine: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let (send, receive) = channel::<Job>();
        std::thread::Builder::new()
            .name("cove-spawner".into())
            .spawn(move || {
                confine();
                while let Ok(job) = receive.recv() {
                    job();
                }
            })?;
        let _ = SPAWNER.set(Spawner {
            jobs: std::sync::Mutex::new(send),
        });
        Ok(())
    }

    fn run<R: Send + 'static>(&self, job: impl FnOnce() -> R + Send + 'static) -> Option<R> {
        let (send, receive) = sync_channel(1);
        let boxed: Job = Box::new(move || {
            let _ = send.send(job());
        });
        self.jobs.lock().ok()?.send(boxed).ok()?;
        receive.recv().ok()
    }
}

/// Starts a thread of `kind` named `name` running `body`, through the spawner when one is
/// installed, after the start hook.
pub fn spawn<T: Send + 'static>(
    kind: ThreadKind,
    name: String,
    body: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<JoinHandle<T>> {
    let start = move || {
        if let Some(hook) = START_HOOK.get() {
            hook(kind);
        }
        body()
    };
    let builder = std::thread::Builder::new().name(name);
    match SPAWNER.get() {
        None => builder.spawn(start),
        Some(spawner) => spawner
            .run(move || builder.spawn(start))
            .unwrap_or_else(|| Err(std::io::Error::other("the spawner thread is gone"))),
    }
}
