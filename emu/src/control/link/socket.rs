//! The link's transport: a Unix `SOCK_SEQPACKET` socket, so that each message arrives whole
//! and alone, with a file descriptor riding along where one is sent (`SCM_RIGHTS`, for the
//! shared screen). A datagram longer than [`MAX_MESSAGE_BYTES`] is cut by the kernel and
//! reported as too large; extra descriptors are closed.

use super::{LinkError, MAX_MESSAGE_BYTES};
use crate::control::secure_path;
use nix::sys::socket::{
    accept4, bind, connect, listen, recvmsg, sendmsg, setsockopt, shutdown, socket, socketpair,
    sockopt, AddressFamily, Backlog, ControlMessage, ControlMessageOwned, MsgFlags, Shutdown,
    SockFlag, SockType, UnixAddr,
};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn seqpacket() -> std::io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// A socket timeout: zero means none, so a given timeout is at least a microsecond.
fn timeval(timeout: Option<Duration>) -> nix::sys::time::TimeVal {
    nix::sys::time::TimeVal::new(
        timeout.map_or(0, |t| t.as_secs() as i64),
        timeout.map_or(0, |t| i64::from(t.subsec_micros().max(1))),
    )
}

/// One end of a link.
#[derive(Debug)]
pub struct LinkSocket {
    fd: OwnedFd,
}

/// One message as received.
pub struct Received {
    /// How many bytes of the buffer it filled.
    pub len: usize,
    /// The descriptor that came with it, if any.
    pub fd: Option<OwnedFd>,
}

impl LinkSocket {
    /// Two connected ends (for tests, and a child that inherits one).
    pub fn pair() -> std::io::Result<(Self, Self)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Self { fd: a }, Self { fd: b }))
    }

    /// Connects to the link listening at `path`.
    pub fn connect(path: &Path) -> std::io::Result<Self> {
        let fd = seqpacket()?;
        connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
        Ok(Self { fd })
    }

    /// Another handle on the same socket (one thread reads, another writes).
    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(Self {
            fd: self.fd.try_clone()?,
        })
    }

    /// Receiving waits at most `timeout` (None: for ever); a wait that ends reports
    /// [`LinkError::TimedOut`].
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        Ok(setsockopt(
            &self.fd,
            sockopt::ReceiveTimeout,
            &timeval(timeout),
        )?)
    }

    /// Sending waits at most `timeout` for room (None: for ever).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        Ok(setsockopt(
            &self.fd,
            sockopt::SendTimeout,
            &timeval(timeout),
        )?)
    }

    /// Sends one message, with `fd` attached when given.
    pub fn send(&self, message: &[u8], fd: Option<BorrowedFd>) -> Result<(), LinkError> {
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(LinkError::TooLarge(message.len()));
        }
        let raw: Vec<RawFd> = fd.iter().map(|f| f.as_raw_fd()).collect();
        let rights = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &rights };
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &[IoSlice::new(message)],
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => return Err(LinkError::TimedOut),
                Err(e) => return Err(LinkError::Io(e.into())),
            }
        }
    }

    /// Receives one message into `buffer` (which should hold [`MAX_MESSAGE_BYTES`]). None: the
    /// other end closed.
    pub fn receive(&self, buffer: &mut [u8]) -> Result<Option<Received>, LinkError> {
        let mut space = nix::cmsg_space!([RawFd; 4]);
        loop {
            let mut iov = [IoSliceMut::new(buffer)];
            let msg = match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => msg,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => return Err(LinkError::TimedOut),
                Err(e) => return Err(LinkError::Io(e.into())),
            };
            let mut fds: Vec<OwnedFd> = Vec::new();
            if let Ok(cmsgs) = msg.cmsgs() {
                for cmsg in cmsgs {
                    if let ControlMessageOwned::ScmRights(raw) = cmsg {
                        for fd in raw {
                            // SAFETY: the kernel just installed `fd` in this process for this
                            // message; nothing else owns it.
                            fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                        }
                    }
                }
            }
            let (len, flags) = (msg.bytes, msg.flags);
            if len == 0 && fds.is_empty() {
                return Ok(None);
            }
            if flags.contains(MsgFlags::MSG_TRUNC) {
                return Err(LinkError::TooLarge(len));
            }
            if fds.len() > 1 || flags.contains(MsgFlags::MSG_CTRUNC) {
                return Err(LinkError::Malformed("more than one descriptor"));
            }
            return Ok(Some(Received { len, fd: fds.pop() }));
        }
    }

    /// Ends the connection both ways (a blocked receive on another handle returns).
    pub fn shutdown(&self) {
        let _ = shutdown(self.fd.as_raw_fd(), Shutdown::Both);
    }
}

impl AsFd for LinkSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Where a VM process accepts the app. The socket file is removed when this is dropped.
#[derive(Debug)]
pub struct LinkListener {
    fd: OwnedFd,
    path: PathBuf,
}

impl LinkListener {
    /// Listens at `path`, reachable only by this user (see [`secure_path::bind_private`]).
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        let fd = secure_path::bind_private(
            path,
            |staged| {
                let fd = seqpacket()?;
                bind(fd.as_raw_fd(), &UnixAddr::new(staged)?)?;
                listen(&fd, Backlog::new(4)?)?;
                Ok(fd)
            },
            |p| LinkSocket::connect(p).is_ok(),
        )?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the next connection.
    pub fn accept(&self) -> std::io::Result<LinkSocket> {
        loop {
            match accept4(self.fd.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
                Ok(fd) => {
                    // SAFETY: accept4 returned a new descriptor that nothing else owns.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    return Ok(LinkSocket { fd });
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Makes a blocked [`Self::accept`] return (with an error).
    pub fn shutdown(&self) {
        let _ = shutdown(self.fd.as_raw_fd(), Shutdown::Both);
    }
}

impl Drop for LinkListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
