//! The controlling terminal in raw mode, so every key reaches the guest console. The saved
//! settings are restored when the guard drops, on every exit path including panics.

use std::os::fd::{AsRawFd, BorrowedFd};

/// Restores the terminal's settings on drop.
pub struct RawModeGuard {
    fd: i32,
    saved: libc::termios,
}

impl RawModeGuard {
    /// Puts `fd` in raw mode if it is a terminal; `None` otherwise (input is a pipe or file).
    pub fn enable(fd: BorrowedFd<'_>) -> Option<Self> {
        let fd = fd.as_raw_fd();
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(fd) } != 1 {
            return None;
        }
        // SAFETY: termios is plain data; tcgetattr fills it for a valid terminal descriptor.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is a terminal and `saved` is a valid termios to fill.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        // Input: no signals, no line editing, no echo, no CR/LF translation, no flow control.
        // Output processing stays on so host log lines keep their layout.
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
        raw.c_iflag &=
            !(libc::IXON | libc::ICRNL | libc::INLCR | libc::IGNCR | libc::ISTRIP | libc::BRKINT);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: `fd` is a terminal and `raw` a valid termios derived from its settings.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(Self { fd, saved })
    }
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        // SAFETY: restores settings read from this same terminal descriptor.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}
