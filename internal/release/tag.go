package release

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// CreateTag tags HEAD with its version as an annotated tag whose message is
// the changelog. It tags only a new version (Version.New): created is
// false, with no error, when HEAD already carries the tag or nothing since
// the last release bumps the version. It never moves a tag: a tag of that
// name on another commit is refused with ErrTagExists, and a tag that would
// clash with the new one in git's ref store (v1.4.0/x, or V1.4.0 on a
// case-insensitive file system) is refused with ErrInput.
func (r *Repo) CreateTag() (created bool, err error) {
	v, err := r.Next()
	if err != nil || !v.New {
		return false, err
	}
	name := v.Tag
	var existing *plumbing.Reference
	var blocker string
	tags, err := r.git.Tags()
	if err != nil {
		return false, fmt.Errorf("list tags: %w", err)
	}
	err = tags.ForEach(func(ref *plumbing.Reference) error {
		n := ref.Name().Short()
		switch {
		case n == name:
			existing = ref
		case blocker == "" && (strings.HasPrefix(n, name+"/") || strings.HasPrefix(name, n+"/") || strings.EqualFold(n, name)):
			blocker = n
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("list tags: %w", err)
	}
	if existing != nil {
		at, _, err := r.peel(existing.Hash())
		if err != nil {
			return false, fmt.Errorf("read tag %s: %w", name, err)
		}
		if at == r.headHash {
			return false, nil
		}
		return false, errorf(ErrTagExists, "tag %s already exists on commit %s, and HEAD is %s: gantry never moves a release tag. "+
			"%s was released from history that HEAD does not contain; merge it into this branch, or, if %s was never published, delete it (`git tag -d %s`) and run again",
			name, short(at), short(r.headHash), name, name, name)
	}
	if blocker != "" {
		why := "git stores tags as files, and " + blocker + " and " + name + " cannot both exist"
		if strings.EqualFold(blocker, name) {
			why = "they differ only in case, and are the same file on macOS and Windows"
		}
		return false, errorf(ErrInput, "tag %s is in the way of the new tag %s: %s. %s is not a version tag (gantry's are %sMAJOR.MINOR.PATCH) and is otherwise ignored; rename or delete it (`git tag -d %s`)",
			blocker, name, why, blocker, r.prefix, blocker)
	}
	cl, err := r.Changelog()
	if err != nil {
		return false, err
	}
	msg := "Release " + v.Version.String() + "\n\n" + cl.Markdown()
	_, err = r.git.CreateTag(name, r.headHash, &git.CreateTagOptions{Tagger: r.tagger(), Message: msg})
	if errors.Is(err, git.ErrTagExists) {
		return false, errorf(ErrTagExists, "tag %s was created by someone else while gantry was computing it; run again", name)
	}
	if err != nil {
		return false, fmt.Errorf("create tag %s: %w", name, err)
	}
	return true, nil
}

// tagger is who tags: GIT_COMMITTER_NAME and GIT_COMMITTER_EMAIL as git
// reads them, else user.name and user.email from git's configuration, else
// "gantry" (CI machines often have no git identity).
func (r *Repo) tagger() *object.Signature {
	name, email := r.opts.Getenv("GIT_COMMITTER_NAME"), r.opts.Getenv("GIT_COMMITTER_EMAIL")
	if name == "" || email == "" {
		if c, err := r.git.ConfigScoped(gitconfig.SystemScope); err == nil && c.User.Name != "" && c.User.Email != "" {
			name, email = c.User.Name, c.User.Email
		}
	}
	if name == "" || email == "" {
		name, email = "gantry", "gantry@localhost"
	}
	return &object.Signature{Name: name, Email: email, When: r.opts.Now()}
}
