//! Host input to guest input: egui keys to evdev key codes (by physical position, so the
//! guest's own layout applies), and pointer events to absolute tablet events.

use egui::Key;
use emu::virtio::input::{evdev, InputEvent};

/// The evdev code of the key at `key`'s physical position.
pub fn evdev_code(key: Key) -> Option<u16> {
    use Key::*;
    Some(match key {
        Escape => 1,
        Num1 => 2,
        Num2 => 3,
        Num3 => 4,
        Num4 => 5,
        Num5 => 6,
        Num6 => 7,
        Num7 => 8,
        Num8 => 9,
        Num9 => 10,
        Num0 => 11,
        Minus => 12,
        Equals | Plus => 13,
        Backspace => 14,
        Tab => 15,
        Q => 16,
        W => 17,
        E => 18,
        R => 19,
        T => 20,
        Y => 21,
        U => 22,
        I => 23,
        O => 24,
        P => 25,
        OpenBracket | OpenCurlyBracket => 26,
        CloseBracket | CloseCurlyBracket => 27,
        Enter => 28,
        ControlLeft => 29,
        A => 30,
        S => 31,
        D => 32,
        F => 33,
        G => 34,
        H => 35,
        J => 36,
        K => 37,
        L => 38,
        Semicolon | Colon => 39,
        Quote => 40,
        Backtick => 41,
        ShiftLeft => 42,
        Backslash | Pipe => 43,
        Z => 44,
        X => 45,
        C => 46,
        V => 47,
        B => 48,
        N => 49,
        M => 50,
        Comma => 51,
        Period => 52,
        Slash | Questionmark => 53,
        ShiftRight => 54,
        AltLeft => 56,
        Space => 57,
        CapsLock => 58,
        F1 => 59,
        F2 => 60,
        F3 => 61,
        F4 => 62,
        F5 => 63,
        F6 => 64,
        F7 => 65,
        F8 => 66,
        F9 => 67,
        F10 => 68,
        NumLock => 69,
        ScrollLock => 70,
        IntlBackslash => 86,
        F11 => 87,
        F12 => 88,
        ControlRight => 97,
        PrintScreen => 99,
        AltRight => 100,
        Home => 102,
        ArrowUp => 103,
        PageUp => 104,
        ArrowLeft => 105,
        ArrowRight => 106,
        End => 107,
        ArrowDown => 108,
        PageDown => 109,
        Insert => 110,
        Delete => 111,
        AudioVolumeMute => 113,
        AudioVolumeDown => 114,
        AudioVolumeUp => 115,
        Pause => 119,
        SuperLeft => 125,
        SuperRight => 126,
        Menu => 127,
        Copy => 133,
        Paste => 135,
        Cut => 137,
        F13 => 183,
        F14 => 184,
        F15 => 185,
        F16 => 186,
        F17 => 187,
        F18 => 188,
        F19 => 189,
        F20 => 190,
        F21 => 191,
        F22 => 192,
        F23 => 193,
        F24 => 194,
        _ => return None,
    })
}

/// Every modifier key (left and right Ctrl, Shift, Alt, Super), as evdev codes; the guest
/// is told when these are released if focus leaves.
const MODIFIER_KEYS: [u16; 8] = [29, 97, 42, 54, 56, 100, 125, 126];

/// Reads one modifier's state.
type ModifierState = fn(&egui::Modifiers) -> bool;

/// The guest's modifier keys and the egui modifier state they follow.
const MODIFIERS: [(u16, ModifierState); 3] = [(29, |m| m.ctrl), (42, |m| m.shift), (56, |m| m.alt)];

/// Turns egui events into guest keyboard and tablet events. Modifier keys the host reports
/// only as state (not as key events) are pressed and released in the guest as the state
/// changes.
#[derive(Default)]
pub struct InputTranslator {
    /// Modifier keys the guest believes are down (evdev codes).
    held_modifiers: Vec<u16>,
    buttons: [bool; 3],
}

/// Guest events produced from one batch of host events.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Translated {
    /// For the virtio keyboard: key events, each batch ended by a SYN_REPORT.
    pub keyboard: Vec<InputEvent>,
    /// For the virtio tablet: absolute position and button events, each batch ended by a
    /// SYN_REPORT.
    pub tablet: Vec<InputEvent>,
}

impl InputTranslator {
    /// A key went down or up, with the modifier state at that moment.
    pub fn key(
        &mut self,
        key: Key,
        pressed: bool,
        modifiers: &egui::Modifiers,
        out: &mut Translated,
    ) {
        let Some(code) = evdev_code(key) else {
            log::debug!("no guest key for {key:?}");
            return;
        };
        self.sync_modifiers(modifiers, code, out);
        out.keyboard.push(InputEvent::key(code, pressed));
        out.keyboard.push(InputEvent::sync());
        if MODIFIER_KEYS.contains(&code) {
            if pressed {
                if !self.held_modifiers.contains(&code) {
                    self.held_modifiers.push(code);
                }
            } else {
                self.held_modifiers.retain(|c| *c != code);
            }
        }
    }

    /// Presses or releases the left modifier keys so the guest's state matches `modifiers`.
    fn sync_modifiers(&mut self, modifiers: &egui::Modifiers, key: u16, out: &mut Translated) {
        for (code, active) in MODIFIERS {
            if code == key {
                continue;
            }
            let held = self.held_modifiers.contains(&code);
            let want = active(modifiers);
            if want && !held {
                self.held_modifiers.push(code);
                out.keyboard.push(InputEvent::key(code, true));
                out.keyboard.push(InputEvent::sync());
            } else if !want && held {
                self.held_modifiers.retain(|c| *c != code);
                out.keyboard.push(InputEvent::key(code, false));
                out.keyboard.push(InputEvent::sync());
            }
        }
    }

    /// Releases every key the guest believes is down (focus lost, grab released).
    pub fn release_all(&mut self, out: &mut Translated) {
        for code in self.held_modifiers.drain(..) {
            out.keyboard.push(InputEvent::key(code, false));
        }
        if !out.keyboard.is_empty() {
            out.keyboard.push(InputEvent::sync());
        }
    }

    /// The pointer is at tablet position (`x`, `y`).
    pub fn pointer_moved(&mut self, x: u32, y: u32, out: &mut Translated) {
        out.tablet
            .push(InputEvent::new(evdev::EV_ABS, evdev::ABS_X, x));
        out.tablet
            .push(InputEvent::new(evdev::EV_ABS, evdev::ABS_Y, y));
        out.tablet.push(InputEvent::sync());
    }

    /// A mouse button went down or up: a tablet BTN_* event, unless the button is already in
    /// that state.
    pub fn button(&mut self, button: egui::PointerButton, pressed: bool, out: &mut Translated) {
        let (index, code) = match button {
            egui::PointerButton::Primary => (0, evdev::BTN_LEFT),
            egui::PointerButton::Secondary => (1, evdev::BTN_RIGHT),
            egui::PointerButton::Middle => (2, evdev::BTN_MIDDLE),
            egui::PointerButton::Extra1 => {
                out.tablet.push(InputEvent::key(evdev::BTN_SIDE, pressed));
                out.tablet.push(InputEvent::sync());
                return;
            }
            egui::PointerButton::Extra2 => {
                out.tablet.push(InputEvent::key(evdev::BTN_EXTRA, pressed));
                out.tablet.push(InputEvent::sync());
                return;
            }
        };
        if self.buttons[index] == pressed {
            return;
        }
        self.buttons[index] = pressed;
        out.tablet.push(InputEvent::key(code, pressed));
        out.tablet.push(InputEvent::sync());
    }

    /// Wheel movement in notches (positive: up / right).
    pub fn wheel(&mut self, up: i32, right: i32, out: &mut Translated) {
        if up != 0 {
            out.tablet
                .push(InputEvent::new(evdev::EV_REL, evdev::REL_WHEEL, up as u32));
        }
        if right != 0 {
            out.tablet.push(InputEvent::new(
                evdev::EV_REL,
                evdev::REL_HWHEEL,
                right as u32,
            ));
        }
        if up != 0 || right != 0 {
            out.tablet.push(InputEvent::sync());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_digits_and_specials() {
        assert_eq!(evdev_code(Key::A), Some(30));
        assert_eq!(evdev_code(Key::H), Some(35));
        assert_eq!(evdev_code(Key::Num0), Some(11));
        assert_eq!(evdev_code(Key::PrintScreen), Some(99), "SysRq");
        assert_eq!(evdev_code(Key::Delete), Some(111));
        assert_eq!(evdev_code(Key::F5), Some(63));
    }

    #[test]
    fn ctrl_alt_delete_presses_the_modifiers_first() {
        let mut t = InputTranslator::default();
        let mut out = Translated::default();
        let mods = egui::Modifiers {
            ctrl: true,
            alt: true,
            ..Default::default()
        };
        t.key(Key::Delete, true, &mods, &mut out);
        let codes: Vec<(u16, u32)> = out
            .keyboard
            .iter()
            .filter(|e| e.kind == evdev::EV_KEY)
            .map(|e| (e.code, e.value))
            .collect();
        assert_eq!(codes, vec![(29, 1), (56, 1), (111, 1)]);
        // Releasing the modifiers in the host releases them in the guest.
        let mut out = Translated::default();
        t.key(Key::Delete, false, &egui::Modifiers::default(), &mut out);
        let released: Vec<u16> = out
            .keyboard
            .iter()
            .filter(|e| e.kind == evdev::EV_KEY && e.value == 0)
            .map(|e| e.code)
            .collect();
        assert_eq!(released, vec![29, 56, 111]);
    }

    #[test]
    fn buttons_and_wheel() {
        let mut t = InputTranslator::default();
        let mut out = Translated::default();
        t.button(egui::PointerButton::Primary, true, &mut out);
        t.button(egui::PointerButton::Primary, true, &mut out);
        t.wheel(-1, 0, &mut out);
        assert_eq!(
            out.tablet,
            vec![
                InputEvent::key(evdev::BTN_LEFT, true),
                InputEvent::sync(),
                InputEvent::new(evdev::EV_REL, evdev::REL_WHEEL, u32::MAX),
                InputEvent::sync(),
            ]
        );
    }
}
