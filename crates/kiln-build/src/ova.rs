//! OVA: a ustar archive of the OVF descriptor (first), its SHA-256 manifest,
//! then the disk as a streamOptimized VMDK.

use std::fs::File;
use std::io::{BufWriter, Cursor, Write};
use std::path::Path;

use kiln_assemble::layout::Boot;
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use crate::Error;
use crate::hash::{file_digests, sha256_hex};

/// What the descriptor says about the virtual machine.
#[derive(Debug, Clone)]
pub struct OvaSpec<'a> {
    pub name: &'a str,
    pub cpus: u32,
    pub memory_mib: u64,
    /// Shown as the guest OS: "Debian bookworm".
    pub os_description: String,
    pub boot: Boot,
    pub epoch: u64,
}

/// The DMTF CIM operating system id and VMware guest type for Debian/Ubuntu 64-bit.
fn os_ids(description: &str) -> (&'static str, &'static str) {
    if description.to_ascii_lowercase().starts_with("ubuntu") {
        ("94", "ubuntu64Guest")
    } else {
        ("96", "debian11_64Guest")
    }
}

const VMDK_FORMAT: &str =
    "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";

/// The OVF descriptor for a disk file of `disk_bytes` holding `capacity` guest bytes.
pub fn descriptor(
    spec: &OvaSpec<'_>,
    disk_file: &str,
    disk_bytes: u64,
    capacity: u64,
) -> Result<String, Error> {
    let mut w = Writer::new_with_indent(Cursor::new(Vec::new()), b' ', 2);
    let io = |e: std::io::Error| Error::new(format!("writing the OVF descriptor: {e}"));
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .map_err(io)?;
    let (os_id, vmw_os) = os_ids(&spec.os_description);
    let text = |w: &mut Writer<Cursor<Vec<u8>>>, name: &str, value: &str| -> std::io::Result<()> {
        w.create_element(name)
            .write_text_content(BytesText::new(value))?;
        Ok(())
    };
    // rasd elements follow the CIM schema's alphabetical order.
    let item =
        |w: &mut Writer<Cursor<Vec<u8>>>, fields: &[(&str, String)]| -> std::io::Result<()> {
            w.create_element("Item").write_inner_content(|w| {
                for (k, v) in fields {
                    w.create_element(format!("rasd:{k}"))
                        .write_text_content(BytesText::new(v))?;
                }
                Ok(())
            })?;
            Ok(())
        };
    w.create_element("Envelope")
        .with_attributes([
            ("xmlns", "http://schemas.dmtf.org/ovf/envelope/1"),
            ("xmlns:ovf", "http://schemas.dmtf.org/ovf/envelope/1"),
            ("xmlns:rasd", "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"),
            ("xmlns:vssd", "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"),
            ("xmlns:vmw", "http://www.vmware.com/schema/ovf"),
            ("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"),
            ("ovf:version", "1.0"),
        ])
        .write_inner_content(|w| {
            w.create_element("References").write_inner_content(|w| {
                w.create_element("File")
                    .with_attributes([
                        ("ovf:href", disk_file),
                        ("ovf:id", "file1"),
                        ("ovf:size", disk_bytes.to_string().as_str()),
                    ])
                    .write_empty()?;
                Ok(())
            })?;
            w.create_element("DiskSection").write_inner_content(|w| {
                text(w, "Info", "Virtual disk information")?;
                w.create_element("Disk")
                    .with_attributes([
                        ("ovf:capacity", capacity.to_string().as_str()),
                        ("ovf:capacityAllocationUnits", "byte"),
                        ("ovf:diskId", "vmdisk1"),
                        ("ovf:fileRef", "file1"),
                        ("ovf:format", VMDK_FORMAT),
                    ])
                    .write_empty()?;
                Ok(())
            })?;
            w.create_element("NetworkSection").write_inner_content(|w| {
                text(w, "Info", "The list of logical networks")?;
                w.create_element("Network")
                    .with_attribute(("ovf:name", "VM Network"))
                    .write_inner_content(|w| text(w, "Description", "The VM Network network"))?;
                Ok(())
            })?;
            w.create_element("VirtualSystem")
                .with_attribute(("ovf:id", spec.name))
                .write_inner_content(|w| {
                    text(w, "Info", "A virtual machine built by kiln")?;
                    text(w, "Name", spec.name)?;
                    w.create_element("OperatingSystemSection")
                        .with_attributes([("ovf:id", os_id), ("vmw:osType", vmw_os)])
                        .write_inner_content(|w| {
                            text(w, "Info", "The kind of installed guest operating system")?;
                            text(w, "Description", &spec.os_description)
                        })?;
                    w.create_element("VirtualHardwareSection").write_inner_content(|w| {
                        text(w, "Info", "Virtual hardware requirements")?;
                        w.create_element("System").write_inner_content(|w| {
                            text(w, "vssd:ElementName", "Virtual Hardware Family")?;
                            text(w, "vssd:InstanceID", "0")?;
                            text(w, "vssd:VirtualSystemIdentifier", spec.name)?;
                            text(w, "vssd:VirtualSystemType", "vmx-14")
                        })?;
                        item(w, &[
                            ("AllocationUnits", "hertz * 10^6".into()),
                            ("Description", "Number of virtual CPUs".into()),
                            ("ElementName", format!("{} virtual CPU(s)", spec.cpus)),
                            ("InstanceID", "1".into()),
                            ("ResourceType", "3".into()),
                            ("VirtualQuantity", spec.cpus.to_string()),
                        ])?;
                        item(w, &[
                            ("AllocationUnits", "byte * 2^20".into()),
                            ("Description", "Memory size".into()),
                            ("ElementName", format!("{}MB of memory", spec.memory_mib)),
                            ("InstanceID", "2".into()),
                            ("ResourceType", "4".into()),
                            ("VirtualQuantity", spec.memory_mib.to_string()),
                        ])?;
                        item(w, &[
                            ("Address", "0".into()),
                            ("Description", "SATA Controller".into()),
                            ("ElementName", "SATA Controller 0".into()),
                            ("InstanceID", "3".into()),
                            ("ResourceSubType", "AHCI".into()),
                            ("ResourceType", "20".into()),
                        ])?;
                        item(w, &[
                            ("AddressOnParent", "0".into()),
                            ("ElementName", "Hard Disk 1".into()),
                            ("HostResource", "ovf:/disk/vmdisk1".into()),
                            ("InstanceID", "4".into()),
                            ("Parent", "3".into()),
                            ("ResourceType", "17".into()),
                        ])?;
                        item(w, &[
                            ("AutomaticAllocation", "true".into()),
                            ("Connection", "VM Network".into()),
                            ("ElementName", "Ethernet 1".into()),
                            ("InstanceID", "5".into()),
                            ("ResourceSubType", "E1000".into()),
                            ("ResourceType", "10".into()),
                        ])?;
                        if spec.boot == Boot::Uefi {
                            w.create_element("vmw:Config")
                                .with_attributes([
                                    ("ovf:required", "false"),
                                    ("vmw:key", "firmware"),
                                    ("vmw:value", "efi"),
                                ])
                                .write_empty()?;
                        }
                        Ok(())
                    })?;
                    Ok(())
                })?;
            Ok(())
        })
        .map_err(io)?;
    let mut xml = String::from_utf8(w.into_inner().into_inner())
        .map_err(|_| Error::new("the OVF descriptor is not UTF-8"))?;
    xml.push('\n');
    Ok(xml)
}

/// Writes the OVA of the raw disk at `raw` to `dest`.
pub fn write(raw: &Path, dest: &Path, stem: &str, spec: &OvaSpec<'_>) -> Result<(), Error> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let disk_name = format!("{stem}-disk1.vmdk");
    let vmdk = dir.join(format!(".{disk_name}.part"));
    crate::output::convert(
        raw,
        &vmdk,
        kiln_disk::Format::Vmdk,
        kiln_template::Compression::None,
    )?;
    let result = (|| {
        let disk_bytes = std::fs::metadata(&vmdk)?.len();
        let capacity = std::fs::metadata(raw)?.len();
        let ovf_name = format!("{stem}.ovf");
        let ovf = descriptor(spec, &disk_name, disk_bytes, capacity)?;
        let (disk_sha, _) = file_digests(&vmdk)?;
        let mf = format!(
            "SHA256({ovf_name})= {}\nSHA256({disk_name})= {disk_sha}\n",
            sha256_hex(ovf.as_bytes())
        );
        let mut archive = tar::Builder::new(BufWriter::new(File::create(dest)?));
        let header = |size: u64| {
            let mut h = tar::Header::new_ustar();
            h.set_size(size);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(spec.epoch);
            h.set_entry_type(tar::EntryType::Regular);
            h
        };
        archive.append_data(&mut header(ovf.len() as u64), &ovf_name, ovf.as_bytes())?;
        archive.append_data(
            &mut header(mf.len() as u64),
            format!("{stem}.mf"),
            mf.as_bytes(),
        )?;
        archive.append_data(&mut header(disk_bytes), &disk_name, File::open(&vmdk)?)?;
        let mut out = archive.into_inner()?;
        out.flush()?;
        out.into_inner()
            .map_err(|e| Error::new(format!("writing {}: {e}", dest.display())))?
            .sync_all()?;
        Ok(())
    })();
    let _ = std::fs::remove_file(&vmdk);
    result
}
