//! The messages of the link: [`ToGui`] (what a VM process tells the app) and [`ToVm`] (what the
//! app asks of it), each encoded into one datagram and decoded with every field checked. A
//! message that does not decode is an error for the receiver to log; it never panics.

use super::wire::{Reader, Writer};
use super::{LinkError, MAX_INPUT_EVENTS, MAX_MESSAGE_BYTES};
use crate::machine::report::VmStatus;
use crate::scanout::{CursorImage, PixelFormat, Rect};
use crate::virtio::input::InputEvent;

/// The largest cursor image sent (virtio-gpu's cursors are 64 x 64).
pub const MAX_CURSOR_SIDE: u32 = 64;

/// A command the app gives a VM (QMP's `stop`, `cont`, `system_reset`, `system_powerdown`,
/// `quit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Park the vCPUs.
    Pause,
    /// Run the vCPUs again.
    Resume,
    /// Reset the machine.
    Reset,
    /// Press the ACPI power button.
    PowerDown,
    /// Turn the VM off now.
    Quit,
}

/// What a debug build of the app may ask of a VM process started with `--debug-commands`
/// (tests use them to stand in for a guest or a fault); a VM process without that flag
/// refuses them with a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugAction {
    /// Draw a small test picture on the screen, as a guest's GPU driver would.
    DrawTestFrame,
    /// Make a system call no thread of a VM process needs (`execve`) from a device worker.
    ForbiddenSyscall,
    /// Abort the process, as a device model's bug would.
    Abort,
}

const DEBUG_ACTIONS: [DebugAction; 3] = [
    DebugAction::DrawTestFrame,
    DebugAction::ForbiddenSyscall,
    DebugAction::Abort,
];

const COMMANDS: [Command; 5] = [
    Command::Pause,
    Command::Resume,
    Command::Reset,
    Command::PowerDown,
    Command::Quit,
];

const STATUSES: [VmStatus; 5] = [
    VmStatus::Prelaunch,
    VmStatus::Running,
    VmStatus::Paused,
    VmStatus::Shutdown,
    VmStatus::InternalError,
];

const FORMATS: [PixelFormat; 8] = [
    PixelFormat::Bgra,
    PixelFormat::Bgrx,
    PixelFormat::Argb,
    PixelFormat::Xrgb,
    PixelFormat::Rgba,
    PixelFormat::Xbgr,
    PixelFormat::Abgr,
    PixelFormat::Rgbx,
];

fn index_of<T: PartialEq>(all: &[T], v: &T) -> u8 {
    all.iter().position(|x| x == v).unwrap_or(0) as u8
}

fn pick<T: Copy>(all: &[T], i: u8, what: &'static str) -> Result<T, LinkError> {
    all.get(usize::from(i))
        .copied()
        .ok_or(LinkError::Malformed(what))
}

/// What a VM process tells the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToGui {
    /// The first message on a connection: who answers and whether the VM has a display.
    Hello {
        /// The protocol version ([`super::PROTOCOL_VERSION`]).
        version: u32,
        /// The VM process.
        pid: u32,
        /// Whether the VM has a display (virtio-gpu, keyboard and tablet).
        display: bool,
    },
    /// Another app is attached; this connection closes.
    Busy,
    /// The VM's status changed.
    Status(VmStatus),
    /// Scanout 0 now shows a surface of this shape, whose pixels are in the shared memory that
    /// comes with the message (a memfd, sealed against shrinking).
    Screen {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// The pixels' byte order.
        format: PixelFormat,
    },
    /// Scanout 0 is off (no mode, or the machine was reset).
    ScreenOff,
    /// A rectangle of the shared screen changed.
    Dirty(Rect),
    /// The pointer image (None: hidden).
    Cursor(Option<CursorImage>),
    /// The pointer's hot spot moved to these screen pixels.
    CursorPosition {
        /// Column.
        x: u32,
        /// Row.
        y: u32,
    },
    /// Bytes the guest wrote to its serial console.
    Serial(Vec<u8>),
    /// The machine was reset.
    Reset,
    /// Something to tell the user (the outcome of a command that failed).
    Notice(String),
    /// The VM ended; the process exits next.
    Ended {
        /// Whether it failed (else it powered off or was stopped).
        failed: bool,
        /// What happened.
        text: String,
    },
}

/// What the app asks of a VM process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToVm {
    /// Keyboard events, ending with a sync.
    Keyboard(Vec<InputEvent>),
    /// Tablet events, ending with a sync.
    Tablet(Vec<InputEvent>),
    /// The window's display area is this big (the guest is offered the mode).
    DisplaySize {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// Bytes typed into the serial console.
    SerialInput(Vec<u8>),
    /// A command.
    Command(Command),
    /// A debug action (refused unless the VM process allows them).
    Debug(DebugAction),
}

fn events(w: &mut Writer, events: &[InputEvent]) {
    let n = events.len().min(MAX_INPUT_EVENTS);
    w.u32(n as u32);
    for e in &events[..n] {
        w.u16(e.kind).u16(e.code).u32(e.value);
    }
}

fn read_events(r: &mut Reader) -> Result<Vec<InputEvent>, LinkError> {
    let n = r.u32()? as usize;
    if n > MAX_INPUT_EVENTS {
        return Err(LinkError::Malformed("too many input events"));
    }
    (0..n)
        .map(|_| Ok(InputEvent::new(r.u16()?, r.u16()?, r.u32()?)))
        .collect()
}

fn rect(w: &mut Writer, r: &Rect) {
    w.u32(r.x).u32(r.y).u32(r.width).u32(r.height);
}

impl ToGui {
    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let w = match self {
            Self::Hello {
                version,
                pid,
                display,
            } => {
                let mut w = Writer::new(1);
                w.u32(*version).u32(*pid).u8(u8::from(*display));
                w
            }
            Self::Busy => Writer::new(2),
            Self::Status(s) => {
                let mut w = Writer::new(3);
                w.u8(index_of(&STATUSES, s));
                w
            }
            Self::Screen {
                width,
                height,
                format,
            } => {
                let mut w = Writer::new(4);
                w.u32(*width).u32(*height).u8(index_of(&FORMATS, format));
                w
            }
            Self::ScreenOff => Writer::new(5),
            Self::Dirty(r) => {
                let mut w = Writer::new(6);
                rect(&mut w, r);
                w
            }
            Self::Cursor(None) => Writer::new(7),
            Self::Cursor(Some(c)) => {
                let mut w = Writer::new(8);
                w.u32(c.width)
                    .u32(c.height)
                    .u32(c.hot_x)
                    .u32(c.hot_y)
                    .bytes(&c.rgba);
                w
            }
            Self::CursorPosition { x, y } => {
                let mut w = Writer::new(9);
                w.u32(*x).u32(*y);
                w
            }
            Self::Serial(bytes) => {
                let mut w = Writer::new(10);
                w.bytes(bytes);
                w
            }
            Self::Reset => Writer::new(11),
            Self::Notice(text) => {
                let mut w = Writer::new(12);
                w.bytes(text.as_bytes());
                w
            }
            Self::Ended { failed, text } => {
                let mut w = Writer::new(13);
                w.u8(u8::from(*failed)).bytes(text.as_bytes());
                w
            }
        };
        w.0
    }

    /// Reads a message, checking every field.
    pub fn decode(message: &[u8]) -> Result<Self, LinkError> {
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(LinkError::TooLarge(message.len()));
        }
        let mut r = Reader::new(message);
        let out = match r.u8()? {
            1 => Self::Hello {
                version: r.u32()?,
                pid: r.u32()?,
                display: r.u8()? != 0,
            },
            2 => Self::Busy,
            3 => Self::Status(pick(&STATUSES, r.u8()?, "unknown VM status")?),
            4 => {
                let (width, height) = (r.u32()?, r.u32()?);
                let format = pick(&FORMATS, r.u8()?, "unknown pixel format")?;
                if width == 0 || height == 0 || width > 16384 || height > 16384 {
                    return Err(LinkError::Malformed("impossible screen size"));
                }
                Self::Screen {
                    width,
                    height,
                    format,
                }
            }
            5 => Self::ScreenOff,
            6 => Self::Dirty(Rect::new(r.u32()?, r.u32()?, r.u32()?, r.u32()?)),
            7 => Self::Cursor(None),
            8 => {
                let (width, height, hot_x, hot_y) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
                let rgba = r.bytes()?.to_vec();
                if width > MAX_CURSOR_SIDE
                    || height > MAX_CURSOR_SIDE
                    || rgba.len() != width as usize * height as usize * 4
                {
                    return Err(LinkError::Malformed("a cursor image of the wrong size"));
                }
                Self::Cursor(Some(CursorImage {
                    width,
                    height,
                    hot_x,
                    hot_y,
                    rgba,
                }))
            }
            9 => Self::CursorPosition {
                x: r.u32()?,
                y: r.u32()?,
            },
            10 => Self::Serial(r.bytes()?.to_vec()),
            11 => Self::Reset,
            12 => Self::Notice(r.text()?),
            13 => Self::Ended {
                failed: r.u8()? != 0,
                text: r.text()?,
            },
            _ => return Err(LinkError::Malformed("unknown message")),
        };
        r.finish()?;
        Ok(out)
    }
}

impl ToVm {
    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let w = match self {
            Self::Keyboard(e) => {
                let mut w = Writer::new(1);
                events(&mut w, e);
                w
            }
            Self::Tablet(e) => {
                let mut w = Writer::new(2);
                events(&mut w, e);
                w
            }
            Self::DisplaySize { width, height } => {
                let mut w = Writer::new(3);
                w.u32(*width).u32(*height);
                w
            }
            Self::SerialInput(bytes) => {
                let mut w = Writer::new(4);
                w.bytes(bytes);
                w
            }
            Self::Command(c) => {
                let mut w = Writer::new(5);
                w.u8(index_of(&COMMANDS, c));
                w
            }
            Self::Debug(a) => {
                let mut w = Writer::new(6);
                w.u8(index_of(&DEBUG_ACTIONS, a));
                w
            }
        };
        w.0
    }

    /// Reads a message, checking every field.
    pub fn decode(message: &[u8]) -> Result<Self, LinkError> {
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(LinkError::TooLarge(message.len()));
        }
        let mut r = Reader::new(message);
        let out = match r.u8()? {
            1 => Self::Keyboard(read_events(&mut r)?),
            2 => Self::Tablet(read_events(&mut r)?),
            3 => Self::DisplaySize {
                width: r.u32()?,
                height: r.u32()?,
            },
            4 => Self::SerialInput(r.bytes()?.to_vec()),
            5 => Self::Command(pick(&COMMANDS, r.u8()?, "unknown command")?),
            6 => Self::Debug(pick(&DEBUG_ACTIONS, r.u8()?, "unknown debug action")?),
            _ => return Err(LinkError::Malformed("unknown message")),
        };
        r.finish()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_survives_the_trip() {
        let to_gui = [
            ToGui::Hello {
                version: 1,
                pid: 42,
                display: true,
            },
            ToGui::Busy,
            ToGui::Status(VmStatus::Paused),
            ToGui::Screen {
                width: 1280,
                height: 800,
                format: PixelFormat::Xrgb,
            },
            ToGui::ScreenOff,
            ToGui::Dirty(Rect::new(1, 2, 3, 4)),
            ToGui::Cursor(None),
            ToGui::Cursor(Some(CursorImage {
                width: 2,
                height: 1,
                hot_x: 1,
                hot_y: 0,
                rgba: vec![9; 8],
            })),
            ToGui::CursorPosition { x: 5, y: 6 },
            ToGui::Serial(b"login:".to_vec()),
            ToGui::Reset,
            ToGui::Notice("no".into()),
            ToGui::Ended {
                failed: true,
                text: "triple fault".into(),
            },
        ];
        for m in to_gui {
            assert_eq!(ToGui::decode(&m.encode()).unwrap(), m);
        }
        let to_vm = [
            ToVm::Keyboard(vec![InputEvent::new(1, 30, 1), InputEvent::new(0, 0, 0)]),
            ToVm::Tablet(vec![]),
            ToVm::DisplaySize {
                width: 800,
                height: 600,
            },
            ToVm::SerialInput(b"ls\r".to_vec()),
            ToVm::Command(Command::Quit),
            ToVm::Debug(DebugAction::Abort),
        ];
        for m in to_vm {
            assert_eq!(ToVm::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn bad_messages_are_errors() {
        assert!(ToGui::decode(&[]).is_err());
        assert!(ToGui::decode(&[99]).is_err());
        assert!(ToGui::decode(&[3, 77]).is_err(), "unknown status");
        assert!(ToGui::decode(&[5, 0]).is_err(), "trailing bytes");
        let mut huge = vec![10];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(ToGui::decode(&huge).is_err(), "a length beyond the message");
        let mut screen = ToGui::Screen {
            width: 1,
            height: 1,
            format: PixelFormat::Bgrx,
        }
        .encode();
        screen[1..5].copy_from_slice(&0u32.to_le_bytes());
        assert!(ToGui::decode(&screen).is_err(), "zero width");
        let mut many = vec![1];
        many.extend_from_slice(&(MAX_INPUT_EVENTS as u32 + 1).to_le_bytes());
        assert!(ToVm::decode(&many).is_err());
        assert!(ToVm::decode(&vec![4; MAX_MESSAGE_BYTES + 1]).is_err());
    }
}
