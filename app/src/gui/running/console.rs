//! The VM tab's serial console: the scrollback the VM's serial port writes into (with a mark
//! at each reset), and the view of it, which follows new output while it is scrolled to the
//! end and stays put once the user scrolls up, with a line of input for the guest.

use crate::vm_controls::VmCommands;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;

/// The line the serial log gets at each reset of the machine.
pub const RESET_MARK: &str = "--- reset ---";

/// Serial output kept for the console tab.
const SCROLLBACK_BYTES: usize = 1 << 20;

/// The serial output kept, newest last.
#[derive(Default)]
pub struct Scrollback {
    bytes: VecDeque<u8>,
    changed: bool,
}

impl Scrollback {
    /// Adds serial output.
    pub fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend(bytes.iter().filter(|b| **b != b'\r'));
        let excess = self.bytes.len().saturating_sub(SCROLLBACK_BYTES);
        self.bytes.drain(..excess);
        self.changed = true;
    }

    /// Adds `line` on a line of its own.
    pub fn mark(&mut self, line: &str) {
        if self.bytes.back().is_some_and(|b| *b != b'\n') {
            self.push(b"\n");
        }
        self.push(line.as_bytes());
        self.push(b"\n");
    }

    /// The whole text, when it changed since the last call.
    fn take_text(&mut self) -> Option<String> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        let (a, b) = self.bytes.as_slices();
        Some(String::from_utf8_lossy(&[a, b].concat()).into_owned())
    }
}

/// The console view of one VM.
pub struct Console {
    pub scrollback: Arc<Mutex<Scrollback>>,
    text: String,
    input: String,
}

impl Console {
    pub fn new() -> Self {
        Self {
            scrollback: Arc::default(),
            text: String::new(),
            input: String::new(),
        }
    }

    /// The serial log as the console shows it (brought up to date).
    pub fn text(&mut self) -> &str {
        let changed = self.scrollback.lock().take_text();
        if let Some(text) = changed {
            self.text = text;
        }
        &self.text
    }

    /// Draws the input line and the log; returns a message when typed input was dropped.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        id: &str,
        controller: &dyn VmCommands,
    ) -> Option<String> {
        let mut dropped = None;
        ui.horizontal(|ui| {
            let input = ui.add(
                egui::TextEdit::singleline(&mut self.input).hint_text("type a line for the guest"),
            );
            let send = ui.button("Send").clicked()
                || (input.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)));
            if send {
                let mut line = std::mem::take(&mut self.input).into_bytes();
                line.push(b'\r');
                if !controller.serial_input(&line) {
                    dropped = Some("the VM is between boots; input dropped".to_string());
                }
            }
        });
        self.text();
        // Each VM's log scrolls on its own (the id), and sticks to the end — following new
        // output — until the user scrolls up; scrolling back to the end follows again.
        egui::ScrollArea::vertical()
            .id_salt(("serial-console", id))
            .stick_to_bottom(true)
            .auto_shrink([false, false])
            .show(ui, |ui| {
                ui.add(egui::Label::new(egui::RichText::new(&self.text).monospace()).wrap());
            });
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_sits_on_a_line_of_its_own() {
        let mut s = Scrollback::default();
        s.push(b"booting\r\npartial");
        s.mark("--- reset ---");
        s.mark("--- reset ---");
        assert_eq!(
            s.take_text().as_deref(),
            Some("booting\npartial\n--- reset ---\n--- reset ---\n")
        );
        assert_eq!(s.take_text(), None, "unchanged");
    }
}
