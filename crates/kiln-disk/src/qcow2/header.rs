/// The qcow2 header.
pub struct Header;
