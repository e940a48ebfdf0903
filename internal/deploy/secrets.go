package deploy

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/redact"
	"github.com/gantryhq/gantry/internal/runtime"
)

// secretName is what a secret may be called: it names a file on the host
// and in the container (Docker Swarm's rule, which compose's is looser than).
var secretName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)

// maxSecretSize is Docker Swarm's limit, for the same reason: a secret is
// a password or a key, not a data file.
const maxSecretSize = 500 << 10

// defaultSecretMode: only the container's user reads its secrets.
const defaultSecretMode = 0o400

// secretValue is a secret read for a plan, or one an orchestrator holds.
type secretValue struct {
	file, env, envFile string
	value              []byte
	fingerprint        string
	// external names a secret the orchestrator (Swarm) already holds.
	external string
}

// readSecrets checks and reads every secret the model's services use, by
// name.
func (e *Engine) readSecrets(m *config.Model) (map[string]*secretValue, error) {
	read := map[string]*secretValue{}
	for _, service := range m.Order {
		sc := m.Compose.Services[service]
		if len(sc.Secrets) > 0 && !e.rt.Local() {
			return nil, inputError("service %s uses secrets, which gantry writes to a tmpfs on this machine and bind-mounts; the Docker host %s is remote, so it would not see them. Run gantry on that host (gantry server there), or deploy without secrets", service, e.rt.Host())
		}
		for _, ref := range sc.Secrets {
			if !secretName.MatchString(ref.Source) {
				return nil, inputError("service %s: secret name %q is not allowed: start with a letter or digit, then letters, digits, '.', '_' or '-', at most 64 characters", service, ref.Source)
			}
			def, ok := m.Compose.Secrets[ref.Source]
			if !ok {
				return nil, inputError("service %s uses secret %q, which is not declared under the top-level secrets:", service, ref.Source)
			}
			if _, ok := read[ref.Source]; ok {
				continue
			}
			if bool(def.External) && e.orchestrated() {
				// A secret the swarm already holds, by its own name.
				v := &secretValue{external: def.Name}
				if v.external == "" {
					v.external = ref.Source
				}
				read[ref.Source] = v
				continue
			}
			v, err := e.readSecretDef(m, ref.Source, def)
			if err != nil {
				return nil, err
			}
			read[ref.Source] = v
		}
	}
	return read, nil
}

// secrets resolves a service's compose secrets into mounts: where each
// value comes from, its owner and mode in the container, its fingerprint,
// and the value itself (kept out of the stored plan), from the values
// readSecrets read.
func (e *Engine) secrets(ctx context.Context, m *config.Model, service string, img runtime.Image, read map[string]*secretValue) ([]runtime.SecretMount, error) {
	sc := m.Compose.Services[service]
	var owner *[2]int
	var out []runtime.SecretMount
	targets := map[string]string{}
	for _, ref := range sc.Secrets {
		v := read[ref.Source]
		target, err := secretTarget(ref)
		if err != nil {
			return nil, inputError("service %s, secret %s: %v", service, ref.Source, err)
		}
		if other, dup := targets[target]; dup {
			return nil, inputError("service %s mounts secrets %s and %s both at %s; give one another target", service, other, ref.Source, target)
		}
		targets[target] = ref.Source
		mnt := runtime.SecretMount{Name: ref.Source, Target: target, Mode: defaultSecretMode,
			File: v.file, Env: v.env, EnvFile: v.envFile, Fingerprint: v.fingerprint, Value: v.value,
			External: v.external != "", ExternalName: v.external}
		if e.orchestrated() {
			// Swarm's default: its tasks run as any user, and root owns
			// the file unless compose says otherwise.
			mnt.Mode = 0o444
		}
		if ref.Mode != nil {
			if *ref.Mode < 0 || *ref.Mode > 0o777 {
				return nil, inputError("service %s, secret %s: mode %#o is not a file mode; write it like 0400 or 0440", service, ref.Source, *ref.Mode)
			}
			mnt.Mode = uint32(*ref.Mode)
		}
		// An orchestrator applies compose's uid, gid and mode itself.
		if (ref.UID == "" || ref.GID == "") && !e.orchestrated() {
			if owner == nil {
				uid, gid, err := e.containerUser(ctx, service, sc, img)
				if err != nil {
					return nil, err
				}
				owner = &[2]int{uid, gid}
			}
			mnt.UID, mnt.GID = owner[0], owner[1]
		}
		for _, id := range []struct {
			val, field string
			dst        *int
		}{{ref.UID, "uid", &mnt.UID}, {ref.GID, "gid", &mnt.GID}} {
			if id.val == "" {
				continue
			}
			n, err := strconv.Atoi(id.val)
			if err != nil || n < 0 {
				return nil, inputError("service %s, secret %s: %s %q is not a number; give the numeric id", service, ref.Source, id.field, id.val)
			}
			*id.dst = n
		}
		out = append(out, mnt)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out, nil
}

// secretTarget is where a secret appears in the container: /run/secrets/
// <name> unless compose gives a target (relative ones go under
// /run/secrets, as compose does).
func secretTarget(ref types.ServiceSecretConfig) (string, error) {
	t := ref.Target
	if t == "" {
		t = ref.Source
	}
	if !path.IsAbs(t) {
		t = "/run/secrets/" + t
	}
	for _, part := range strings.Split(t, "/") {
		if part == ".." {
			return "", fmt.Errorf("target %q climbs out with ..; give a plain path such as /run/secrets/%s", ref.Target, ref.Source)
		}
	}
	if c := path.Clean(t); c == "/" || c != t {
		return "", fmt.Errorf("target %q is not a clean file path; write it like /run/secrets/%s", ref.Target, ref.Source)
	}
	return t, nil
}

// containerUser is who the container runs as, in numbers: compose's
// user:, else the image's USER, else root. A name is looked up in the
// image's /etc/passwd when the runtime can; a numeric user without a group
// gets gid 0, which a 0400 file does not care about.
func (e *Engine) containerUser(ctx context.Context, service string, sc types.ServiceConfig, img runtime.Image) (int, int, error) {
	user := sc.User
	if user == "" {
		user = img.User
	}
	if user == "" {
		return 0, 0, nil
	}
	name, group, hasGroup := strings.Cut(user, ":")
	uid, uerr := strconv.Atoi(name)
	gid, gerr := strconv.Atoi(group)
	if uerr == nil && (!hasGroup || gerr == nil) {
		return uid, gid, nil
	}
	ur, ok := e.rt.(runtime.UserResolver)
	if !ok {
		return 0, 0, inputError("service %s runs as user %q, a name gantry cannot turn into numbers on %s; set uid and gid on its secrets in the compose file", service, user, e.rt.Host())
	}
	uid, gid, err := ur.ResolveUser(ctx, img.ID, user)
	if err != nil {
		return 0, 0, inputError("service %s: %v", service, err)
	}
	return uid, gid, nil
}

// readSecretDef reads a secret's value from where compose says it is,
// fingerprints it and teaches it to the redactor.
func (e *Engine) readSecretDef(m *config.Model, name string, def types.SecretConfig) (*secretValue, error) {
	v, err := readSecretValue(m, name, def)
	if err != nil {
		return nil, err
	}
	fp, err := e.fingerprint(v.value)
	if err != nil {
		return nil, err
	}
	v.fingerprint = fp
	e.redact.Add(v.value)
	if len(strings.TrimSpace(string(v.value))) < redact.MinLen {
		e.report.Note(fmt.Sprintf("warning: secret %s is shorter than %d characters: gantry cannot mask it in logs and output without mangling them", name, redact.MinLen))
	}
	return v, nil
}

// SecretRedactor teaches r (a new redactor when nil) the values of a
// model's secrets that can be read now, and returns it: for commands that
// print the model or what its containers say.
func SecretRedactor(m *config.Model, r *redact.Redactor) *redact.Redactor {
	if r == nil {
		r = redact.New()
	}
	for name, def := range m.Compose.Secrets {
		if v, err := readSecretValue(m, name, def); err == nil {
			r.Add(v.value)
		}
		if def.Content != "" {
			r.Add([]byte(def.Content)) // content:, or environment: as compose-go resolves it
		}
	}
	return r
}

// readSecretValue reads a secret's value from where compose says it is.
func readSecretValue(m *config.Model, name string, def types.SecretConfig) (*secretValue, error) {
	v := &secretValue{}
	switch {
	case bool(def.External):
		return nil, inputError("secret %s is external: external secrets live in Docker Swarm; on a Docker host use `file:` or `environment:`", name)
	case def.File != "":
		f := def.File
		if !filepath.IsAbs(f) {
			f = filepath.Join(m.File.Dir, f)
		}
		b, err := readSecretFile(f)
		if err != nil {
			return nil, inputError("secret %s: %v; create it or fix secrets.%s.file in the compose file", name, err, name)
		}
		v.file, v.value = f, b
	case def.Environment != "":
		val, ok := m.Compose.Environment[def.Environment]
		if !ok {
			return nil, inputError("secret %s: environment variable %s is not set; export it or put it in .env", name, def.Environment)
		}
		v.env, v.value = def.Environment, []byte(val)
		if os.Getenv(def.Environment) != val {
			v.envFile = envFileOf(m, def.Environment, val)
		}
	case def.Content != "":
		// compose-go fills Content from environment: too, handled above.
		return nil, inputError("secret %s has `content:`, which puts its value in the compose file; use `file:` or `environment:`", name)
	default:
		return nil, inputError("secret %s has no source; give it `file:` or `environment:`", name)
	}
	if len(v.value) == 0 {
		return nil, inputError("secret %s: its %s is empty; a secret needs a value", name, (runtime.SecretMount{File: v.file, Env: v.env, EnvFile: v.envFile}).Source())
	}
	if len(v.value) > maxSecretSize {
		return nil, inputError("secret %s is more than %d KiB; a secret is a password or a key, not a data file", name, maxSecretSize>>10)
	}
	return v, nil
}

// readSecretFile reads a secret's file, refusing what is not one.
func readSecretFile(f string) ([]byte, error) {
	st, err := os.Stat(f)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("file %s does not exist", f)
	}
	if err != nil {
		return nil, fmt.Errorf("file %s: %v", f, errors.Unwrap(err))
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory; point it at a file", f)
	}
	fh, err := os.Open(f)
	if err != nil {
		return nil, fmt.Errorf("file %s cannot be read: %v", f, errors.Unwrap(err))
	}
	defer fh.Close()
	return io.ReadAll(io.LimitReader(fh, maxSecretSize+1))
}

// envFileOf names the env file a variable's value came from (the last one
// that sets it, as later files win), or "" when none does.
func envFileOf(m *config.Model, name, val string) string {
	files := append([]string(nil), m.Env.EnvFiles...)
	if len(files) == 0 {
		files = []string{".env"}
	}
	for i := len(files) - 1; i >= 0; i-- {
		f := files[i]
		if !filepath.IsAbs(f) {
			f = filepath.Join(m.File.Dir, f)
		}
		vars, err := dotenv.GetEnvFromFile(map[string]string{}, []string{f})
		if err == nil && vars[name] == val {
			return f
		}
	}
	return ""
}

// loadSecrets reads the values of a recorded plan's secrets again (a
// rollback, a recovery, an approved promotion): they were never stored. A
// source that is gone leaves the value empty with the reason: a kept
// container still has its secret files and restarts without it; one that
// must be created fails, saying which source to restore.
func (e *Engine) loadSecrets(plan *runtime.Plan) {
	changed := map[string]bool{}
	for _, name := range plan.Order {
		svc := plan.Services[name]
		for i := range svc.Secrets {
			sm := &svc.Secrets[i]
			if sm.External {
				continue
			}
			b, err := readSource(*sm)
			if err != nil {
				sm.ReadErr = err
				continue
			}
			sm.Value = b
			e.redact.Add(b)
			if fp, err := e.fingerprint(b); err == nil && fp != sm.Fingerprint && e.orchestrated() {
				// On a swarm the secret's object is named after the value
				// the release ran with: another value cannot take its name.
				sm.Value, sm.ReadErr = nil, fmt.Errorf("it holds another value now than when release %s was planned", plan.Release)
				continue
			}
			if fp, err := e.fingerprint(b); err == nil && fp != sm.Fingerprint && !changed[sm.Name] {
				changed[sm.Name] = true
				e.report.Note(fmt.Sprintf("note: secret %s changed since release %s was planned; a container created for it now gets the current value", sm.Name, plan.Release))
			}
		}
	}
}

// needSecrets refuses, before anything changes, a recorded plan that must
// create a container whose secrets could not be read again: a container of
// the plan that still exists keeps its secret files and needs no source.
func (e *Engine) needSecrets(ctx context.Context, plan *runtime.Plan) error {
	if o, ok := e.rt.(runtime.Orchestrator); ok {
		// The swarm may hold the secret still (keep_releases).
		if err := o.Check(ctx, plan); err != nil {
			if errors.Is(err, runtime.ErrSecretUnavailable) {
				return inputError("release %s cannot run: %v", plan.Release, err)
			}
			return err
		}
		return nil
	}
	var kept map[string]bool
	for _, name := range plan.Order {
		for _, sm := range plan.Services[name].Secrets {
			if sm.ReadErr == nil {
				continue
			}
			if kept == nil {
				cs, err := e.rt.Containers(ctx, plan.Project, plan.Env)
				if err != nil {
					return err
				}
				kept = map[string]bool{}
				for _, c := range cs {
					kept[c.Service] = kept[c.Service] || c.PlanID == plan.ID
				}
			}
			if !kept[name] {
				return inputError("release %s cannot run: service %s needs secret %s, which gantry reads again from its source (it never stores a value): %v", plan.Release, name, sm.Name, sm.ReadErr)
			}
		}
	}
	return nil
}

// readSource reads a recorded secret's value from its source.
func readSource(sm runtime.SecretMount) ([]byte, error) {
	switch {
	case sm.File != "":
		b, err := readSecretFile(sm.File)
		if err != nil {
			return nil, fmt.Errorf("%v; restore it", err)
		}
		return b, nil
	case sm.Env != "":
		if v, ok := os.LookupEnv(sm.Env); ok {
			return []byte(v), nil
		}
		if sm.EnvFile != "" {
			vars, err := dotenv.GetEnvFromFile(map[string]string{}, []string{sm.EnvFile})
			if err != nil {
				// Not the parser's message: it may quote a line, value and all.
				return nil, fmt.Errorf("env file %s, which held variable %s, is gone or no longer parses; restore it", sm.EnvFile, sm.Env)
			}
			if v, ok := vars[sm.Env]; ok {
				return []byte(v), nil
			}
			return nil, fmt.Errorf("variable %s is no longer set in %s nor in gantry's environment; set it again", sm.Env, sm.EnvFile)
		}
		return nil, fmt.Errorf("environment variable %s is not set in this gantry's environment; export it and run again", sm.Env)
	}
	return nil, errors.New("the plan does not say where its value comes from (recorded by an older gantry); deploy the release anew")
}

// fingerprint is a keyed hash of a secret value: it tells whether a value
// changed, while the store and the API answers that carry it give nothing
// to test guesses against without the key, which stays in the state
// directory (0600).
func (e *Engine) fingerprint(value []byte) (string, error) {
	key, err := e.secretKey()
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(value)
	return hex.EncodeToString(mac.Sum(nil))[:16], nil
}

func (e *Engine) secretKey() ([]byte, error) {
	e.keyOnce.Do(func() {
		f := filepath.Join(e.stateDir, "secret-fingerprint.key")
		if b, err := os.ReadFile(f); err == nil && len(b) >= 32 {
			e.key = b
			return
		}
		key := make([]byte, 32)
		rand.Read(key)
		if err := os.MkdirAll(e.stateDir, 0o700); err != nil {
			e.keyErr = fmt.Errorf("state directory %s: %w", e.stateDir, err)
			return
		}
		// O_EXCL: of two gantry processes creating it at once, one wins
		// and the other reads the winner's key.
		fh, err := os.OpenFile(f, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			for range 50 {
				if b, err := os.ReadFile(f); err == nil && len(b) >= 32 {
					e.key = b
					return
				}
			}
			e.keyErr = fmt.Errorf("%s is unreadable or shorter than 32 bytes; remove it (fingerprints of recorded secrets then read as changed)", f)
			return
		}
		if err == nil {
			_, err = fh.Write(key)
			if cerr := fh.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			e.keyErr = fmt.Errorf("secret fingerprint key %s: %w", f, err)
			return
		}
		e.key = key
	})
	return e.key, e.keyErr
}

// warnSecretsInEnvironment: an environment entry that holds a secret's
// value is the user's choice, but it puts the value where secrets should
// never be (docker inspect, gantry's record of the plan).
func (e *Engine) warnSecretsInEnvironment(p *runtime.Plan) {
	for _, name := range p.Order {
		env := p.Services[name].Config.Environment
		keys := make([]string, 0, len(env))
		for k, v := range env {
			if v != nil && e.redact.Contains(*v) {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			e.report.Note(fmt.Sprintf("warning: service %s: environment variable %s holds a secret's value, so docker inspect and gantry's record of the deployment show it; read the secret's file under /run/secrets instead", name, k))
			e.log.Warn("secret value in a container's environment", "service", name, "variable", k)
		}
	}
}

// removeLegacySecrets removes the secret files an earlier gantry wrote
// into the state directory (on disk, <state>/secrets/<project>-<env>/
// <name>-<16 hex>): secrets now live on a tmpfs only.
func (e *Engine) removeLegacySecrets(composeName string) {
	dir := filepath.Join(e.stateDir, "secrets", composeName)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	legacy := regexp.MustCompile(`^[a-zA-Z0-9._-]+-[0-9a-f]{16}$`)
	for _, en := range entries {
		if en.Type().IsRegular() && legacy.MatchString(en.Name()) {
			os.Remove(filepath.Join(dir, en.Name()))
		}
	}
	os.Remove(dir)
	os.Remove(filepath.Dir(dir))
}
