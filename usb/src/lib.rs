//! Cove's USB: reserved for the USB issue (the xHCI controller, USB device models and host
//! passthrough through nusb). Empty until then.
