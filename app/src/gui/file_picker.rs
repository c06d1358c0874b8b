//! Native file dialogs (rfd) on a worker thread, so the UI never blocks while one is open.

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, TryRecvError};

/// A dialog that may still be open.
pub struct FilePicker {
    receiver: Receiver<Option<PathBuf>>,
}

impl FilePicker {
    /// Opens a file dialog titled `title`, showing files with `extensions` (all if empty).
    pub fn open(title: &str, extensions: &[&str]) -> Self {
        let (sender, receiver) = channel();
        let title = title.to_string();
        let extensions: Vec<String> = extensions.iter().map(|e| e.to_string()).collect();
        let spawned = std::thread::Builder::new()
            .name("cove-file-dialog".into())
            .spawn(move || {
                let mut dialog = rfd::FileDialog::new().set_title(&title);
                if !extensions.is_empty() {
                    dialog = dialog.add_filter(&title, &extensions);
                }
                let _ = sender.send(dialog.pick_file());
            });
        if let Err(e) = spawned {
            log::warn!("cannot open a file dialog: {e}");
        }
        Self { receiver }
    }

    /// The choice once the dialog closed: Some(Some(path)), Some(None) if cancelled, None while
    /// it is still open.
    pub fn poll(&self) -> Option<Option<PathBuf>> {
        match self.receiver.try_recv() {
            Ok(choice) => Some(choice),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(None),
        }
    }
}
