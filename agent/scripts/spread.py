"""Spread the workspaces over the disk: ext4's "top directory" flag on the work folder.

ext4 places a new folder in its parent's block group, and a new file in its
folder's group, searching that group's inode bitmap from the start. Without a
journal it skips every inode deleted in the last 5-305 s, so with every
workspace in one group, each new file of a script searched past thousands of
the files of the scripts before it (a third of P2's CPU). The flag (``chattr
+T``) makes ext4 place each subfolder as it places top-level ones (Orlov: a
group with few folders and more than average free inodes), so the files of
consecutive workspaces land in different groups and the search is short.
It changes placement only, never what is stored; other filesystems refuse
or ignore it, which is harmless.
"""

from __future__ import annotations

import array
import fcntl
import os
from pathlib import Path

FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000


def spread_subfolders(folder: Path) -> bool:
    """Set the top-directory flag on ``folder``; True if it is set (now or before).

    Never raises: where the filesystem has no such flag it returns False.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        flags = array.array("l", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & FS_TOPDIR_FL:
            flags[0] |= FS_TOPDIR_FL
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, flags, True)
            fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        return bool(flags[0] & FS_TOPDIR_FL)
    except OSError:
        return False
    finally:
        os.close(fd)
