"""Device profiles and the runners that time kernels on a device."""
from __future__ import annotations

from hwprune.devices._profile import DeviceProfile, list_profiles, load_profile

__all__ = ["DeviceProfile", "list_profiles", "load_profile"]
