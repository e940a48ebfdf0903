//go:build !linux

package docker

// memoryBacked is false off Linux: gantry cannot tell a tmpfs there, so it
// keeps no secret file (a deploy with secrets says to set GANTRY_SECRETS_DIR
// on a Linux Docker host).
func memoryBacked(string) bool { return false }
