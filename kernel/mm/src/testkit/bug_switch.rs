//! Taking turns at the bug-replay switch word ([`crate::bugs`]) in host
//! tests. The word is global to the process and a test binary runs its
//! tests on several threads at once: every test that needs the switches
//! off holds [`shared`] while it runs, and one that turns a switch on holds
//! a [`BugOn`], which waits until it is alone and turns the switch off
//! again when dropped (also when the test panics).

extern crate std;

use crate::bugs::{self, Bug};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Shared by the tests that need every switch off; taken alone by
/// [`BugOn`].
static SWITCH: RwLock<()> = RwLock::new(());

/// A turn among the tests that need every switch off.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    SWITCH.read().unwrap_or_else(|e| e.into_inner())
}

/// `bug`'s switch on for as long as this lives, with no other test of the
/// binary running meanwhile (see the module doc).
pub struct BugOn {
    bug: Bug,
    _alone: RwLockWriteGuard<'static, ()>,
}

impl BugOn {
    /// Waits for the turn alone, then turns `bug` on.
    pub fn new(bug: Bug) -> BugOn {
        let alone = SWITCH.write().unwrap_or_else(|e| e.into_inner());
        bugs::enable(bug);
        BugOn { bug, _alone: alone }
    }
}

impl Drop for BugOn {
    fn drop(&mut self) {
        bugs::disable(self.bug);
    }
}
