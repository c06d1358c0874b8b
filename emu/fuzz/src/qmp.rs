//! Target `qmp_session`: the bytes a QMP client sends, split into messages by the server's
//! [`Splitter`] and answered by a [`Session`] over a target that touches nothing (no VM, no
//! files), exactly as a server's reader thread does.
//!
//! Input layout: byte 0 sets how the rest arrives, in reads of `1 + b` bytes (so a message
//! split anywhere is covered); the rest is the client's byte stream.
//!
//! Checked on every input: the splitter yields the same frames however the stream is cut,
//! and every reply is a JSON object with exactly one of `return` and `error`.

use emu::control::qmp::framing::{Frame, Splitter};
use emu::control::qmp::{QmpTarget, Session};
use emu::control::ImageFormat;
use emu::control::{BlockInfo, CpuInfo, VmStatus};
use std::path::Path;

/// A VM that answers every command and does nothing.
struct Inert;

impl QmpTarget for Inert {
    fn status(&self) -> VmStatus {
        VmStatus::Running
    }
    fn pause(&self) -> Result<(), String> {
        Ok(())
    }
    fn resume(&self) -> Result<(), String> {
        Err("the VM has ended".into())
    }
    fn reset(&self) {}
    fn power_down(&self) {}
    fn quit(&self) {}
    fn cpus(&self) -> Vec<CpuInfo> {
        vec![CpuInfo {
            index: 0,
            thread_id: Some(1),
        }]
    }
    fn block_devices(&self) -> Vec<BlockInfo> {
        Vec::new()
    }
    fn screendump(&self, _path: &Path, _format: ImageFormat) -> Result<(), String> {
        Err("no display".into())
    }
}

/// Runs one input; returns the replies, as the JSON text the server would send.
pub fn run(data: &[u8]) -> Vec<String> {
    let Some((&cut, stream)) = data.split_first() else {
        return Vec::new();
    };
    let whole = Splitter::default().feed(stream);
    let mut splitter = Splitter::default();
    let mut frames: Vec<Frame> = Vec::new();
    for piece in stream.chunks(1 + usize::from(cut)) {
        frames.extend(splitter.feed(piece));
    }
    assert!(
        frames == whole,
        "the frames depend on how the stream is cut"
    );

    let mut session = Session::default();
    let mut replies = Vec::new();
    for frame in frames {
        let reply = session.handle(frame, &Inert);
        let has_return = reply.get("return").is_some();
        let has_error = reply.get("error").is_some();
        assert!(
            reply.is_object() && has_return != has_error,
            "bad reply {reply}"
        );
        replies.push(reply.to_string());
    }
    replies
}

/// Inputs for the seed corpus (`seeds/qmp_session/`), each with the replies it must get.
pub mod seeds {
    /// One seed: a name, the input, and a word each reply must contain, in order.
    pub struct Seed {
        pub name: &'static str,
        pub bytes: Vec<u8>,
        pub replies: Vec<&'static str>,
    }

    fn seed(name: &'static str, cut: u8, text: &str, replies: &[&'static str]) -> Seed {
        let mut bytes = vec![cut];
        bytes.extend_from_slice(text.as_bytes());
        Seed {
            name,
            bytes,
            replies: replies.to_vec(),
        }
    }

    pub fn all() -> Vec<Seed> {
        vec![
            seed(
                "session",
                255,
                "{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"query-status\",\"id\":1}\n\
                 {\"execute\":\"stop\"}\r\n{\"execute\":\"cont\"}{\"execute\":\"query-cpus-fast\"}\n\
                 {\"execute\":\"screendump\",\"arguments\":{\"filename\":\"/x\",\"format\":\"png\"}}",
                &[
                    "\"return\":{}",
                    "running",
                    "\"return\":{}",
                    "has ended",
                    "cpu-index",
                    "no display",
                ],
            ),
            seed(
                "before_negotiation",
                2,
                "{\"execute\":\"quit\",\"id\":\"a\"}{\"execute\":\"qmp_capabilities\",\
                 \"arguments\":{\"enable\":[\"oob\"]}}",
                &["CommandNotFound", "not available"],
            ),
            seed(
                "duplicate_keys",
                0,
                "{\"execute\":\"qmp_capabilities\",\"execute\":\"quit\"}\
                 {\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[],\"enable\":[]}}",
                &["duplicate key", "duplicate key"],
            ),
            seed(
                "malformed",
                7,
                "}{\"execute\": \"stop\",, }[1, {\"a\": \"}\\\"\"}] 42 \"str\" true null",
                // The last scalar, `null`, waits for a delimiter that never comes.
                &[
                    "stray", "JSON parse", "JSON object", "JSON object", "JSON object",
                    "JSON object",
                ],
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_get_their_expected_replies() {
        for seed in seeds::all() {
            let replies = run(&seed.bytes);
            assert_eq!(
                replies.len(),
                seed.replies.len(),
                "{}: {replies:?}",
                seed.name
            );
            for (reply, word) in replies.iter().zip(&seed.replies) {
                assert!(reply.contains(word), "{}: {reply} lacks {word}", seed.name);
            }
        }
    }

    /// `COVE_UPDATE_SEEDS=1 cargo test` rewrites the seed files.
    #[test]
    fn seed_files_are_current() {
        let seeds = seeds::all();
        crate::check_seed_files(
            "qmp_session",
            seeds.iter().map(|seed| (seed.name, seed.bytes.as_slice())),
        );
    }

    #[test]
    fn hostile_inputs_end_cleanly() {
        run(&[]);
        run(&[0]);
        let mut deep = vec![3u8];
        deep.extend(std::iter::repeat_n(b'[', 200_000));
        run(&deep);
        let mut long = vec![200u8, b'"'];
        long.extend(std::iter::repeat_n(b'a', (1 << 20) + 10));
        long.push(b'"');
        assert_eq!(run(&long).len(), 1);
    }
}
