//! Target `link_messages`: the protocol between the app and a VM process
//! (`emu::control::link`), on arbitrary datagrams from either side. A compromised VM process
//! chooses every byte the app decodes, so decoding must never panic or allocate beyond the
//! datagram; checked besides: a message that decodes encodes back to bytes that decode to the
//! same message. The first byte says which side sent the rest (even: the VM process, odd: the
//! app).

use emu::control::link::{ToGui, ToVm, MAX_MESSAGE_BYTES};

/// What one input decoded to, for the seed checks.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A message to the app.
    Gui(ToGui),
    /// A message to the VM process.
    Vm(ToVm),
    /// Not a message.
    Refused,
}

/// Runs one input. Never panics on any input.
pub fn run(data: &[u8]) -> Decoded {
    let Some((&side, message)) = data.split_first() else {
        return Decoded::Refused;
    };
    let message = &message[..message.len().min(MAX_MESSAGE_BYTES + 1)];
    if side % 2 == 0 {
        match ToGui::decode(message) {
            Ok(m) => {
                let again = ToGui::decode(&m.encode()).expect("an encoded message decodes");
                assert_eq!(again, m, "round trip changed the message");
                Decoded::Gui(m)
            }
            Err(_) => Decoded::Refused,
        }
    } else {
        match ToVm::decode(message) {
            Ok(m) => {
                let again = ToVm::decode(&m.encode()).expect("an encoded message decodes");
                assert_eq!(again, m, "round trip changed the message");
                Decoded::Vm(m)
            }
            Err(_) => Decoded::Refused,
        }
    }
}

/// Inputs for the seed corpus (`seeds/link_messages/`): each message kind both ways, and broken
/// ones.
pub mod seeds {
    use emu::control::link::{Command, DebugAction, ToGui, ToVm};
    use emu::scanout::{CursorImage, PixelFormat, Rect};
    use emu::virtio::input::InputEvent;

    /// One seed: its file name and bytes, and whether it decodes.
    pub struct Seed {
        /// File name under `seeds/link_messages/`.
        pub name: &'static str,
        /// The input.
        pub bytes: Vec<u8>,
        /// Whether it is a message.
        pub valid: bool,
    }

    fn gui(name: &'static str, m: ToGui) -> Seed {
        let mut bytes = vec![0];
        bytes.extend(m.encode());
        Seed {
            name,
            bytes,
            valid: true,
        }
    }

    fn vm(name: &'static str, m: ToVm) -> Seed {
        let mut bytes = vec![1];
        bytes.extend(m.encode());
        Seed {
            name,
            bytes,
            valid: true,
        }
    }

    /// All seeds.
    pub fn all() -> Vec<Seed> {
        vec![
            gui(
                "hello",
                ToGui::Hello {
                    version: 1,
                    pid: 7,
                    display: true,
                },
            ),
            gui(
                "screen",
                ToGui::Screen {
                    width: 1024,
                    height: 768,
                    format: PixelFormat::Bgrx,
                },
            ),
            gui("dirty", ToGui::Dirty(Rect::new(8, 16, 64, 32))),
            gui(
                "cursor",
                ToGui::Cursor(Some(CursorImage {
                    width: 2,
                    height: 2,
                    hot_x: 1,
                    hot_y: 1,
                    rgba: vec![0xff; 16],
                })),
            ),
            gui("serial", ToGui::Serial(b"login: ".to_vec())),
            gui(
                "ended",
                ToGui::Ended {
                    failed: true,
                    text: "triple fault".into(),
                },
            ),
            vm(
                "keyboard",
                ToVm::Keyboard(vec![InputEvent::new(1, 30, 1), InputEvent::new(0, 0, 0)]),
            ),
            vm(
                "size",
                ToVm::DisplaySize {
                    width: 800,
                    height: 600,
                },
            ),
            vm("command", ToVm::Command(Command::Pause)),
            vm("debug", ToVm::Debug(DebugAction::DrawTestFrame)),
            Seed {
                name: "unknown_tag",
                bytes: vec![0, 200],
                valid: false,
            },
            Seed {
                name: "long_length",
                bytes: vec![0, 10, 0xff, 0xff, 0xff, 0xff, b'x'],
                valid: false,
            },
            Seed {
                name: "big_cursor",
                bytes: vec![0, 8, 0, 1, 0, 0, 0, 1],
                valid: false,
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_decode_as_expected() {
        for seed in seeds::all() {
            let decoded = run(&seed.bytes);
            assert_eq!(decoded != Decoded::Refused, seed.valid, "{}", seed.name);
        }
    }

    #[test]
    fn seed_files_are_current() {
        let all = seeds::all();
        crate::check_seed_files(
            "link_messages",
            all.iter().map(|s| (s.name, s.bytes.as_slice())),
        );
    }
}
