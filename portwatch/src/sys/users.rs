//! User names for uids, through the system's user database (NSS, as
//! `ls -l` and `ps` resolve them), cached.

use std::collections::HashMap;

use crate::safe_text::safe_text;

#[derive(Default)]
pub(crate) struct Users {
    names: HashMap<u32, String>,
}

impl Users {
    /// The name of `uid`, or the number when it has none.
    pub(crate) fn name(&mut self, uid: u32) -> String {
        self.names
            .entry(uid)
            .or_insert_with(|| {
                uzers::get_user_by_uid(uid)
                    .map(|u| safe_text(u.name().as_encoded_bytes()))
                    .unwrap_or_else(|| uid.to_string())
            })
            .clone()
    }
}

/// The uid of the user named `name` (a number is taken as the uid).
pub(crate) fn uid_of(name: &str) -> Option<u32> {
    name.parse()
        .ok()
        .or_else(|| uzers::get_user_by_name(name).map(|u| u.uid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_name_and_a_stranger_a_number() {
        let mut users = Users::default();
        assert_eq!(users.name(0), "root");
        assert_eq!(users.name(4_000_000_000), "4000000000");
    }
}
