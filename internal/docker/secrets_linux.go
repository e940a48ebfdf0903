package docker

import "syscall"

// Filesystem magic numbers of statfs(2): memory-backed filesystems.
const (
	tmpfsMagic = 0x01021994
	ramfsMagic = 0x858458f6
)

// memoryBacked says whether dir lives on a tmpfs (or ramfs), so that what
// is written there never reaches a disk.
func memoryBacked(dir string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return false
	}
	return int64(st.Type) == tmpfsMagic || int64(st.Type) == ramfsMagic
}
