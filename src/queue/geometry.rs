//! The geometry rules every queue kind shares, checked in one place: the capacity asked for
//! at creation, the element type of a typed queue, and the geometry an opened queue records
//! (read from untrusted shared memory, so every field is validated before it is used).

use super::ShmType;

/// Largest capacity accepted (elements or bytes): 2^40.
pub(crate) const MAX_CAPACITY: u64 = 1 << 40;

/// Largest element size (bytes) of a typed queue: 1 MiB.
pub(crate) const MAX_ELEM_SIZE: u64 = 1 << 20;

/// Largest element alignment of a typed queue.
const MAX_ELEM_ALIGN: usize = 128;

/// Check a requested capacity: a power of two in `min..=2^40`.
pub(crate) fn check_capacity(name: &str, capacity: u64, min: u64) -> crate::Result<()> {
    if !capacity.is_power_of_two() || capacity < min {
        return Err(crate::Error::invalid(
            name,
            format!("capacity {capacity} must be a power of two >= {min}"),
        ));
    }
    if capacity > MAX_CAPACITY {
        return Err(crate::Error::TooLarge {
            name: name.to_owned(),
            requested: capacity,
            max: MAX_CAPACITY,
        });
    }
    Ok(())
}

/// Check a typed queue's element type: 1 byte..=1 MiB, alignment at most 128, and a
/// [`TYPE_NAME`](ShmType::TYPE_NAME) the type tag can hold.
pub(crate) fn check_type<T: ShmType>(name: &str) -> crate::Result<()> {
    let (size, align) = (std::mem::size_of::<T>(), std::mem::align_of::<T>());
    if size == 0 || size as u64 > MAX_ELEM_SIZE || align > MAX_ELEM_ALIGN {
        return Err(crate::Error::invalid(
            name,
            format!(
                "element type of {size} bytes, alignment {align}: need 1..=1 MiB and \
                 alignment <= {MAX_ELEM_ALIGN}"
            ),
        ));
    }
    super::shm_type::check_name::<T>(name)
}

/// The geometry an opened queue records (loaded once from shared memory).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(loom, allow(dead_code))]
pub(crate) struct Recorded {
    /// Slots, or bytes for a byte queue.
    pub capacity: u64,
    /// Element size (1 for a byte queue).
    pub elem_size: u64,
    /// Payload offset of the data area.
    pub data_offset: u64,
}

/// What the opener's layout requires of a [`Recorded`] geometry.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(loom, allow(dead_code))]
pub(crate) struct Rules {
    /// Smallest capacity of the layout.
    pub min_capacity: u64,
    /// The element size asked for (`None`: any valid one).
    pub elem_size: Option<u64>,
    /// The data area's offset in this layout.
    pub data_offset: u64,
    /// Bytes per slot for an element size (the data area is `capacity` slots).
    pub slot_size: fn(u64) -> u64,
}

/// Validate the geometry `r` of queue `name`, whose payload is `len` bytes, against `rules`:
/// the data area of `capacity` slots lies inside the payload. Returns the slot size.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn check_recorded(
    name: &str,
    len: u64,
    r: Recorded,
    rules: Rules,
) -> crate::Result<u64> {
    let bad = |what: String| crate::Error::corrupt(name, what);
    let Recorded {
        capacity,
        elem_size,
        data_offset,
    } = r;
    if !capacity.is_power_of_two() || capacity < rules.min_capacity || capacity > MAX_CAPACITY {
        return Err(bad(format!(
            "capacity {capacity} is not a power of two in {}..=2^40",
            rules.min_capacity
        )));
    }
    if elem_size == 0
        || elem_size > MAX_ELEM_SIZE
        || rules.elem_size.is_some_and(|e| e != elem_size)
    {
        return Err(bad(format!(
            "element size {elem_size} does not match the layout fingerprint"
        )));
    }
    if data_offset != rules.data_offset {
        return Err(bad(format!(
            "data offset {data_offset}, expected {}",
            rules.data_offset
        )));
    }
    let slot = (rules.slot_size)(elem_size);
    // No overflow in practice (capacity <= 2^40, slots <= 2^20 + 128), checked anyway.
    let need = capacity
        .checked_mul(slot)
        .and_then(|d| d.checked_add(data_offset));
    match need {
        Some(need) if need <= len => Ok(slot),
        _ => Err(bad(format!(
            "{capacity} slots of {slot} bytes at offset {data_offset} do not fit in a \
             {len}-byte payload"
        ))),
    }
}
