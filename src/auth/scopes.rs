//! Scopes: a closed set with stable wire names, held as a bit set.
//!
//! [`Scope::parse`] and [`ScopeSet::parse_list`] are the only places wire
//! names are read; [`ScopeSet::grantable`] is the only place `*` expands.

use std::fmt;

use super::key::{KeyMode, KeyType};

macro_rules! scopes {
    ($($variant:ident = $wire:literal, public = $public:literal;)*) => {
        /// One permission a key may hold.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Scope { $($variant,)* }

        impl Scope {
            /// Every scope, in wire order.
            pub const ALL: &'static [Scope] = &[$(Scope::$variant,)*];

            /// The stable wire name, e.g. `records:read`.
            pub fn as_str(self) -> &'static str {
                match self { $(Scope::$variant => $wire,)* }
            }

            /// Parses a wire name exactly (no wildcard).
            pub fn parse(s: &str) -> Option<Scope> {
                match s { $($wire => Some(Scope::$variant),)* _ => None }
            }

            /// Whether a public (browser-safe) key may hold this scope.
            pub fn is_public(self) -> bool {
                match self { $(Scope::$variant => $public,)* }
            }
        }
    };
}

scopes! {
    RecordsRead = "records:read", public = true;
    FilesRead = "files:read", public = true;
    SearchRead = "search:read", public = true;
    AnalyticsRead = "analytics:read", public = true;
    NotificationsRead = "notifications:read", public = true;
    SchedulesRead = "schedules:read", public = true;
    RecordsWrite = "records:write", public = false;
    RecordsPublish = "records:publish", public = false;
    RecordsDelete = "records:delete", public = false;
    DraftsRead = "drafts:read", public = false;
    FilesWrite = "files:write", public = false;
    FilesDelete = "files:delete", public = false;
    SchemasRead = "schemas:read", public = false;
    SchemasWrite = "schemas:write", public = false;
    OperationsExecute = "operations:execute", public = false;
    ExtensionsManage = "extensions:manage", public = false;
    ApikeysRead = "apikeys:read", public = false;
    ApikeysCreate = "apikeys:create", public = false;
    ApikeysUpdate = "apikeys:update", public = false;
    ApikeysDelete = "apikeys:delete", public = false;
    ApikeysImport = "apikeys:import", public = false;
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a scope list was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeError {
    /// A name that is not a scope.
    Unknown(String),
    /// A scope this kind of key may not hold.
    NotAllowed(Scope),
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopeError::Unknown(s) => write!(f, "unknown scope \"{s}\""),
            ScopeError::NotAllowed(Scope::DraftsRead) => {
                f.write_str("scope \"drafts:read\" can be granted only to sk_test_ keys")
            }
            ScopeError::NotAllowed(s) => {
                write!(
                    f,
                    "scope \"{s}\" is secret-only and cannot be granted to a public key"
                )
            }
        }
    }
}

/// A set of scopes.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(u32);

impl ScopeSet {
    /// The empty set.
    pub const EMPTY: ScopeSet = ScopeSet(0);

    /// Every scope there is.
    pub fn all() -> Self {
        Scope::ALL.iter().copied().collect()
    }

    /// Every scope a key of this type and mode may hold: what `*` means.
    pub fn grantable(key_type: KeyType, mode: KeyMode) -> Self {
        Scope::ALL
            .iter()
            .copied()
            .filter(|s| may_hold(key_type, mode, *s))
            .collect()
    }

    /// Whether `scope` is in the set.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & (1 << scope as u8) != 0
    }

    /// Adds one scope.
    pub fn insert(&mut self, scope: Scope) {
        self.0 |= 1 << scope as u8;
    }

    /// Whether every scope of `self` is in `other`.
    pub fn is_subset(self, other: ScopeSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// The scopes of `self` not in `other`.
    pub fn difference(self, other: ScopeSet) -> ScopeSet {
        ScopeSet(self.0 & !other.0)
    }

    /// Iterates in wire order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .iter()
            .copied()
            .filter(move |s| self.contains(*s))
    }

    /// Wire names in wire order.
    pub fn names(self) -> Vec<String> {
        self.iter().map(|s| s.as_str().to_owned()).collect()
    }

    /// Parses requested scope names for a key of this type and mode; `*`
    /// expands to [`ScopeSet::grantable`]. Refuses unknown names and scopes
    /// the key may not hold.
    pub fn parse_list<S: AsRef<str>>(
        names: &[S],
        key_type: KeyType,
        mode: KeyMode,
    ) -> Result<ScopeSet, ScopeError> {
        let mut set = ScopeSet::EMPTY;
        for name in names {
            let name = name.as_ref().trim();
            if name == "*" {
                set.0 |= ScopeSet::grantable(key_type, mode).0;
                continue;
            }
            let scope = Scope::parse(name).ok_or_else(|| ScopeError::Unknown(name.to_owned()))?;
            if !may_hold(key_type, mode, scope) {
                return Err(ScopeError::NotAllowed(scope));
            }
            set.insert(scope);
        }
        Ok(set)
    }

    /// Reads the comma-separated form stored in the database, ignoring names
    /// this build does not know (a newer build may have written them).
    pub fn from_stored(stored: &str) -> ScopeSet {
        stored.split(',').filter_map(Scope::parse).collect()
    }

    /// The comma-separated form stored in the database.
    pub fn to_stored(self) -> String {
        self.names().join(",")
    }
}

/// Whether a key of this type and mode may hold `scope`.
pub fn may_hold(key_type: KeyType, mode: KeyMode, scope: Scope) -> bool {
    match scope {
        Scope::DraftsRead => key_type == KeyType::Secret && mode == KeyMode::Test,
        s => key_type == KeyType::Secret || s.is_public(),
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = ScopeSet::EMPTY;
        for s in iter {
            set.insert(s);
        }
        set
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Scope::as_str))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        assert_eq!(Scope::ALL.len(), 21);
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(*s));
        }
        let all = ScopeSet::all();
        assert_eq!(ScopeSet::from_stored(&all.to_stored()), all);
    }

    #[test]
    fn wildcard_expands_per_kind() {
        use KeyMode::*;
        use KeyType::*;
        let star = |t, m| ScopeSet::parse_list(&["*"], t, m).map(|s| s.iter().count());
        assert_eq!(star(Public, Live), Ok(6));
        assert_eq!(star(Public, Test), Ok(6));
        assert_eq!(star(Secret, Live), Ok(20));
        assert_eq!(star(Secret, Test), Ok(21));
    }

    #[test]
    fn refuses_what_a_kind_cannot_hold() {
        use KeyMode::*;
        use KeyType::*;
        assert_eq!(
            ScopeSet::parse_list(&["records:write"], Public, Live),
            Err(ScopeError::NotAllowed(Scope::RecordsWrite))
        );
        for (t, m) in [(Public, Live), (Public, Test), (Secret, Live)] {
            assert_eq!(
                ScopeSet::parse_list(&["drafts:read"], t, m),
                Err(ScopeError::NotAllowed(Scope::DraftsRead))
            );
        }
        assert!(ScopeSet::parse_list(&["drafts:read"], Secret, Test).is_ok());
        assert_eq!(
            ScopeSet::parse_list(&["records:reed"], Secret, Test),
            Err(ScopeError::Unknown("records:reed".into()))
        );
    }

    #[test]
    fn subset() {
        let a: ScopeSet = [Scope::RecordsRead].into_iter().collect();
        let b: ScopeSet = [Scope::RecordsRead, Scope::RecordsWrite]
            .into_iter()
            .collect();
        assert!(a.is_subset(b));
        assert!(!b.is_subset(a));
        assert_eq!(b.difference(a).names(), vec!["records:write"]);
    }
}
