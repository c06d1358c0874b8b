//! The virtio-input configuration space: the driver writes `select` and `subsel`, then reads
//! `size` and the answer (name, IDs, property and event bitmaps, axis ranges).

use super::evdev::*;
use std::mem::offset_of;
use virtio_bindings::virtio_input as bindings;

const ID_NAME: u8 = bindings::virtio_input_config_select_VIRTIO_INPUT_CFG_ID_NAME as u8;
const ID_SERIAL: u8 = bindings::virtio_input_config_select_VIRTIO_INPUT_CFG_ID_SERIAL as u8;
const ID_DEVIDS: u8 = bindings::virtio_input_config_select_VIRTIO_INPUT_CFG_ID_DEVIDS as u8;
const PROP_BITS: u8 = bindings::virtio_input_config_select_VIRTIO_INPUT_CFG_PROP_BITS as u8;
const EV_BITS: u8 = bindings::virtio_input_config_select_VIRTIO_INPUT_CFG_EV_BITS as u8;
const ABS_INFO: u8 = bindings::virtio_input_config_select_VIRTIO_INPUT_CFG_ABS_INFO as u8;

const DATA_LEN: usize = 128;

/// The virtio-input config space (virtio 1.2, 5.8.4): the driver's selection and the answer.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ConfigLayout {
    select: u8,
    subsel: u8,
    size: u8,
    reserved: [u8; 5],
    data: [u8; DATA_LEN],
}

const _: () = {
    use bindings::virtio_input_config as Spec;
    assert!(std::mem::size_of::<ConfigLayout>() == std::mem::size_of::<Spec>());
    assert!(offset_of!(ConfigLayout, size) == offset_of!(Spec, size));
    assert!(offset_of!(ConfigLayout, data) == offset_of!(Spec, u));
};

/// What one input device says about itself.
pub struct InputConfig {
    name: &'static str,
    product: u16,
    /// (event type, codes) the device produces.
    events: Vec<(u16, Vec<u16>)>,
    /// (axis, max) of absolute axes (min 0).
    axes: Vec<(u16, u32)>,
    select: u8,
    subsel: u8,
}

impl InputConfig {
    /// The keyboard's config: every key code up to 0x2ff except the button range.
    pub fn keyboard() -> Self {
        Self {
            name: "Cove virtio keyboard",
            product: 1,
            // Every key code except the BTN_* range (0x100-0x151: mouse, joystick and gamepad
            // buttons), so the guest sees a keyboard and nothing else.
            events: vec![(
                EV_KEY,
                (1..=KEY_MAX_KEYBOARD)
                    .filter(|c| !(0x100..=0x151).contains(c))
                    .collect(),
            )],
            axes: Vec::new(),
            select: 0,
            subsel: 0,
        }
    }

    /// The tablet's config: five buttons, two wheels and absolute X/Y from 0 to [`TABLET_MAX`].
    pub fn tablet() -> Self {
        Self {
            name: "Cove virtio tablet",
            product: 2,
            events: vec![
                (
                    EV_KEY,
                    vec![BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA],
                ),
                (EV_REL, vec![REL_HWHEEL, REL_WHEEL]),
                (EV_ABS, vec![ABS_X, ABS_Y]),
            ],
            axes: vec![(ABS_X, TABLET_MAX), (ABS_Y, TABLET_MAX)],
            select: 0,
            subsel: 0,
        }
    }

    /// The answer to the current select/subsel.
    fn answer(&self) -> Vec<u8> {
        match self.select {
            ID_NAME => self.name.as_bytes().to_vec(),
            ID_SERIAL => b"cove-0001".to_vec(),
            ID_DEVIDS => [0x06u16, 0x0627, self.product, 1]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            PROP_BITS => Vec::new(),
            EV_BITS => {
                let Some((_, codes)) = self
                    .events
                    .iter()
                    .find(|(t, _)| *t == u16::from(self.subsel))
                else {
                    return Vec::new();
                };
                let mut bitmap = vec![0u8; DATA_LEN];
                for &code in codes {
                    if let Some(byte) = bitmap.get_mut(usize::from(code / 8)) {
                        *byte |= 1 << (code % 8);
                    }
                }
                let used = bitmap.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
                bitmap.truncate(used);
                bitmap
            }
            ABS_INFO => match self
                .axes
                .iter()
                .find(|(axis, _)| *axis == u16::from(self.subsel))
            {
                // min, max, fuzz, flat, res
                Some((_, max)) => [0u32, *max, 0, 0, 0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// A driver read of `virtio_input_config`: the answer to the current `select`/`subsel`.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        let answer = self.answer();
        let mut layout = ConfigLayout {
            select: self.select,
            subsel: self.subsel,
            size: answer.len().min(DATA_LEN) as u8,
            reserved: [0; 5],
            data: [0; DATA_LEN],
        };
        let len = answer.len().min(DATA_LEN);
        layout.data[..len].copy_from_slice(&answer[..len]);
        crate::virtio::read_config_struct(&layout, offset, data);
    }

    /// A driver write of `virtio_input_config`; only `select` and `subsel` are writable.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &value) in data.iter().enumerate() {
            match usize::try_from(offset).ok().and_then(|o| o.checked_add(i)) {
                Some(at) if at == offset_of!(ConfigLayout, select) => self.select = value,
                Some(at) if at == offset_of!(ConfigLayout, subsel) => self.subsel = value,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(config: &mut InputConfig, select: u8, subsel: u8) -> Vec<u8> {
        config.write(0, &[select, subsel]);
        let mut size = [0u8];
        config.read(2, &mut size);
        let mut data = vec![0u8; usize::from(size[0])];
        config.read(8, &mut data);
        data
    }

    #[test]
    fn tablet_describes_itself() {
        let mut tablet = InputConfig::tablet();
        assert_eq!(query(&mut tablet, ID_NAME, 0), b"Cove virtio tablet");
        let abs = query(&mut tablet, EV_BITS, EV_ABS as u8);
        assert_eq!(abs, vec![0b11]);
        let keys = query(&mut tablet, EV_BITS, EV_KEY as u8);
        assert_ne!(keys[(BTN_LEFT / 8) as usize] & (1 << (BTN_LEFT % 8)), 0);
        let info = query(&mut tablet, ABS_INFO, ABS_Y as u8);
        assert_eq!(
            u32::from_le_bytes(info[4..8].try_into().unwrap()),
            TABLET_MAX
        );
        assert!(
            query(&mut tablet, EV_BITS, 0x15).is_empty(),
            "no force feedback"
        );
        assert!(query(&mut tablet, 0x77, 0).is_empty(), "unknown select");
    }

    #[test]
    fn keyboard_offers_keys_only() {
        let mut keyboard = InputConfig::keyboard();
        let keys = query(&mut keyboard, EV_BITS, EV_KEY as u8);
        let has = |code: u16| {
            keys.get(usize::from(code / 8))
                .is_some_and(|b| b & (1 << (code % 8)) != 0)
        };
        assert!(has(1) && has(30) && has(99), "Esc, A, SysRq");
        assert!(!has(BTN_LEFT));
        assert!(query(&mut keyboard, EV_BITS, EV_ABS as u8).is_empty());
    }
}
