//! The serial console's escape keys, as QEMU's character multiplexer has them: Ctrl-A followed
//! by a command key. Everything else goes to the guest unchanged.

/// The escape character, Ctrl-A.
pub const ESCAPE: u8 = 0x01;

/// What the user's keystrokes ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleAction {
    /// Bytes for the guest.
    Send(Vec<u8>),
    /// Send a break condition (Ctrl-A B).
    Break,
    /// Stop the VM (Ctrl-A X).
    Quit,
    /// Print the escape help (Ctrl-A H).
    Help,
}

pub const HELP: &str = "\r\nC-a x  stop the VM\r\nC-a b  send break (magic SysRq)\r\nC-a C-a  send C-a\r\nC-a h  this help\r\n";

/// Splits terminal input into guest bytes and escape commands. Keeps state across reads, so an
/// escape split over two reads still works.
#[derive(Default)]
pub struct EscapeParser {
    after_escape: bool,
}

impl EscapeParser {
    pub fn feed(&mut self, input: &[u8]) -> Vec<ConsoleAction> {
        let mut actions = Vec::new();
        let mut pending = Vec::new();
        let flush = |pending: &mut Vec<u8>, actions: &mut Vec<ConsoleAction>| {
            if !pending.is_empty() {
                actions.push(ConsoleAction::Send(std::mem::take(pending)));
            }
        };
        for &byte in input {
            if !self.after_escape {
                if byte == ESCAPE {
                    self.after_escape = true;
                } else {
                    pending.push(byte);
                }
                continue;
            }
            self.after_escape = false;
            match byte.to_ascii_lowercase() {
                b'x' => {
                    flush(&mut pending, &mut actions);
                    actions.push(ConsoleAction::Quit);
                }
                b'b' => {
                    flush(&mut pending, &mut actions);
                    actions.push(ConsoleAction::Break);
                }
                b'h' | b'?' => {
                    flush(&mut pending, &mut actions);
                    actions.push(ConsoleAction::Help);
                }
                ESCAPE => pending.push(ESCAPE),
                // Unknown command: pass both keys through, as QEMU does.
                _ => pending.extend_from_slice(&[ESCAPE, byte]),
            }
        }
        flush(&mut pending, &mut actions);
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConsoleAction::*;

    #[test]
    fn plain_text_passes_through() {
        assert_eq!(
            EscapeParser::default().feed(b"ls\r"),
            vec![Send(b"ls\r".to_vec())]
        );
    }

    #[test]
    fn escapes_become_actions() {
        let mut p = EscapeParser::default();
        assert_eq!(
            p.feed(b"a\x01bo\x01x"),
            vec![Send(b"a".to_vec()), Break, Send(b"o".to_vec()), Quit]
        );
        assert_eq!(p.feed(b"\x01\x01"), vec![Send(vec![ESCAPE])]);
        assert_eq!(p.feed(b"\x01z"), vec![Send(vec![ESCAPE, b'z'])]);
        assert_eq!(p.feed(b"\x01H"), vec![Help]);
    }

    #[test]
    fn escape_split_across_reads() {
        let mut p = EscapeParser::default();
        assert_eq!(p.feed(b"\x01"), vec![]);
        assert_eq!(p.feed(b"X"), vec![Quit]);
    }
}
