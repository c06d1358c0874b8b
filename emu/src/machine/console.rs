//! The host end of the guest's serial console: where its output goes. Input is fed through
//! [`super::VmHandle`].

use parking_lot::Mutex;
use std::io::Write;
use std::sync::Arc;

/// A writer shared by every boot of a VM (the serial device is rebuilt on reboot; the host end
/// stays).
#[derive(Clone)]
pub struct ConsoleOutput(Arc<Mutex<dyn Write + Send>>);

impl ConsoleOutput {
    /// Output to `writer`, which every boot of the VM shares.
    pub fn new(writer: impl Write + Send + 'static) -> Self {
        Self(Arc::new(Mutex::new(writer)))
    }

    /// Output to this process's stdout.
    pub fn stdout() -> Self {
        Self::new(std::io::stdout())
    }

    /// Output discarded.
    pub fn sink() -> Self {
        Self::new(std::io::sink())
    }
}

impl Write for ConsoleOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut w = self.0.lock();
        w.write_all(buf)?;
        w.flush()?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().flush()
    }
}
