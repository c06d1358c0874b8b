//! Cove's sound backend: reserved for the sound issue (cpal playback and capture behind
//! `emu`'s audio stream trait). Empty until then.
