//! Where the guest's screen goes in the space the window gives it, for each scaling mode, and
//! the way back from a pointer position to guest (tablet) coordinates.

/// How the guest screen fills the display area.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScaleMode {
    /// As large as fits, keeping the aspect ratio (letterboxed).
    #[default]
    Fit,
    /// One guest pixel per physical pixel, centred (cropped if larger).
    OneToOne,
    /// Stretched to the whole area.
    Fill,
}

/// An axis-aligned rectangle in floating-point units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Area {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width, never negative.
    pub width: f32,
    /// Height, never negative.
    pub height: f32,
}

/// Where a `guest` (width, height) screen is drawn inside `area`. `pixels_per_unit` converts
/// guest pixels to `area` units (for 1:1).
pub fn place(mode: ScaleMode, area: Area, guest: (u32, u32), pixels_per_unit: f32) -> Area {
    let (gw, gh) = (guest.0.max(1) as f32, guest.1.max(1) as f32);
    let (width, height) = match mode {
        ScaleMode::Fill => (area.width, area.height),
        ScaleMode::OneToOne => (
            gw / pixels_per_unit.max(0.01),
            gh / pixels_per_unit.max(0.01),
        ),
        ScaleMode::Fit => {
            let scale = (area.width / gw).min(area.height / gh);
            (gw * scale, gh * scale)
        }
    };
    Area {
        x: area.x + (area.width - width) / 2.0,
        y: area.y + (area.height - height) / 2.0,
        width,
        height,
    }
}

/// A point in the drawn area as absolute tablet coordinates (0..=max on each axis), clamped.
pub fn to_tablet(drawn: Area, x: f32, y: f32, max: u32) -> (u32, u32) {
    let fx = ((x - drawn.x) / drawn.width.max(1e-3)).clamp(0.0, 1.0);
    let fy = ((y - drawn.y) / drawn.height.max(1e-3)).clamp(0.0, 1.0);
    (
        (fx * max as f32).round() as u32,
        (fy * max as f32).round() as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const AREA: Area = Area {
        x: 0.0,
        y: 0.0,
        width: 1000.0,
        height: 500.0,
    };

    #[test]
    fn fit_keeps_the_aspect_ratio() {
        let drawn = place(ScaleMode::Fit, AREA, (800, 600), 1.0);
        assert!((drawn.height - 500.0).abs() < 1e-3);
        assert!((drawn.width - 666.666).abs() < 1e-2);
        assert!((drawn.x - 166.666).abs() < 1e-2);
    }

    #[test]
    fn one_to_one_and_fill() {
        let drawn = place(ScaleMode::OneToOne, AREA, (800, 600), 2.0);
        assert_eq!((drawn.width, drawn.height), (400.0, 300.0));
        assert_eq!(place(ScaleMode::Fill, AREA, (800, 600), 1.0), AREA);
    }

    #[test]
    fn pointer_positions_map_to_the_tablet_range() {
        let drawn = Area {
            x: 100.0,
            y: 0.0,
            width: 200.0,
            height: 100.0,
        };
        assert_eq!(to_tablet(drawn, 100.0, 0.0, 0x7fff), (0, 0));
        assert_eq!(to_tablet(drawn, 300.0, 100.0, 0x7fff), (0x7fff, 0x7fff));
        assert_eq!(to_tablet(drawn, 200.0, 50.0, 0x7fff), (16384, 16384));
        assert_eq!(
            to_tablet(drawn, -50.0, 900.0, 0x7fff),
            (0, 0x7fff),
            "clamped"
        );
    }
}
