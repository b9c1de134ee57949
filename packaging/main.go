// Command packaging builds Warden's release artefacts from a warden binary
// and the files of this repository: a Debian package, DIR/warden_V_ARCH.deb,
// written with nfpm's deb packager, and a plain tarball,
// DIR/warden_V_linux_ARCH.tar.gz, for machines without dpkg.
//
// Usage, from this directory (`make package` runs it):
//
//	go run . --binary ../bin/warden --version 0.1.0 --arch amd64 --out ../dist
//
// The .deb installs /usr/bin/warden, the systemd units warden-agent and
// warden-broker, their settings in /etc/warden (config files: dpkg keeps an
// operator's edits across upgrades) and /etc/default, the licence and the
// README. Its maintainer scripts create the system user warden and reload
// systemd; they never enable or start a service. SOURCE_DATE_EPOCH, when
// set, fixes every timestamp in both artefacts.
//
// It is a module of its own so that nfpm and its dependencies stay out of
// the product's go.mod.
package main

import (
	"archive/tar"
	"compress/gzip"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

const (
	name       = "warden"
	maintainer = "Warden maintainers"
	homepage   = "https://github.com/wardenhq/warden"
	vendor     = "The Warden Authors"
	license    = "Apache-2.0"
	// The first line is the synopsis, the rest the extended description.
	description = `Web access logs from Kafka to load figures and attack bans, as a Raft cluster
Warden reads web access logs (Apache, nginx, JSON) from Kafka and turns
them into per-minute load figures and attack detections with bans,
exactly once, across a fault-tolerant Raft cluster of agents. It ships
as one binary with an embedded Kafka-protocol broker for a single
machine.

This package installs the warden binary and the systemd units
warden-agent and warden-broker; neither is enabled or started.`
)

// entry is one file of the artefacts.
type entry struct {
	src   string      // path under the repository root (the binary: --binary)
	deb   string      // absolute path in the .deb; "" when not in it
	tar   string      // path in the tarball, under its top directory; "" when not in it
	mode  fs.FileMode // permission bits
	group string      // owning group in the .deb (the owner is root); "" for root
	conf  bool        // a config file: dpkg keeps the operator's edits on upgrade
}

// binarySrc marks the entry whose source is the --binary file.
const binarySrc = "<binary>"

var entries = []entry{
	{src: binarySrc, deb: "/usr/bin/warden", tar: "warden", mode: 0o755},
	{src: "packaging/systemd/warden-agent.service", deb: "/lib/systemd/system/warden-agent.service", tar: "systemd/warden-agent.service", mode: 0o644},
	{src: "packaging/systemd/warden-broker.service", deb: "/lib/systemd/system/warden-broker.service", tar: "systemd/warden-broker.service", mode: 0o644},
	// Group warden may read the settings (they can name key files); others may not.
	{src: "packaging/etc/agent.yaml", deb: "/etc/warden/agent.yaml", tar: "etc/warden/agent.yaml", mode: 0o640, group: "warden", conf: true},
	{src: "packaging/etc/broker.yaml", deb: "/etc/warden/broker.yaml", tar: "etc/warden/broker.yaml", mode: 0o640, group: "warden", conf: true},
	// Read by systemd as root: the place for secrets, so root only.
	{src: "packaging/etc/default/warden-agent", deb: "/etc/default/warden-agent", tar: "etc/default/warden-agent", mode: 0o600, conf: true},
	{src: "packaging/etc/default/warden-broker", deb: "/etc/default/warden-broker", tar: "etc/default/warden-broker", mode: 0o600, conf: true},
	{src: "LICENSE", deb: "/usr/share/doc/warden/copyright", tar: "LICENSE", mode: 0o644},
	{src: "NOTICE", deb: "/usr/share/doc/warden/NOTICE", tar: "NOTICE", mode: 0o644},
	{src: "README.md", deb: "/usr/share/doc/warden/README.md", tar: "README.md", mode: 0o644},
	{src: "examples/cluster/README.md", deb: "/usr/share/doc/warden/examples/cluster/README.md", tar: "examples/cluster/README.md", mode: 0o644},
	{src: "examples/cluster/broker.yaml", deb: "/usr/share/doc/warden/examples/cluster/broker.yaml", tar: "examples/cluster/broker.yaml", mode: 0o644},
	{src: "examples/cluster/n1.yaml", deb: "/usr/share/doc/warden/examples/cluster/n1.yaml", tar: "examples/cluster/n1.yaml", mode: 0o644},
	{src: "examples/cluster/n2.yaml", deb: "/usr/share/doc/warden/examples/cluster/n2.yaml", tar: "examples/cluster/n2.yaml", mode: 0o644},
	{src: "examples/cluster/n3.yaml", deb: "/usr/share/doc/warden/examples/cluster/n3.yaml", tar: "examples/cluster/n3.yaml", mode: 0o644},
}

// debArch maps GOARCH to the Debian architecture name, and elfMachine to
// the ELF machine a binary for it has.
var (
	debArch = map[string]string{
		"amd64": "amd64", "arm64": "arm64", "386": "i386", "arm": "armhf",
		"ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64",
	}
	elfMachine = map[string]elf.Machine{
		"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "386": elf.EM_386, "arm": elf.EM_ARM,
		"ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV,
	}
)

// debVersion is what dpkg accepts as a version without an epoch: it starts
// with a digit and uses only these characters.
var debVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~-]*$`)

type options struct {
	binary, version, arch, out, root string
	mtime                            time.Time
	dynamic                          bool // the binary needs the C library (built with cgo)
}

func main() {
	if err := run(os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		return
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "packaging:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("packaging", flag.ContinueOnError)
	var o options
	fl.StringVar(&o.binary, "binary", "", "the warden binary to package (required)")
	fl.StringVar(&o.version, "version", "", "package version, Debian style: starts with a digit, e.g. 0.1.0 or 0.1.0+g1a2b3c4 (required)")
	fl.StringVar(&o.arch, "arch", "", "GOARCH the binary was built for, e.g. amd64 (required)")
	fl.StringVar(&o.out, "out", "", "directory to write the artefacts to, created if missing (required)")
	fl.StringVar(&o.root, "root", "..", "the repository root, holding LICENSE, README.md and packaging/")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fl.Arg(0))
	}
	if err := o.check(); err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	debPath := filepath.Join(o.out, fmt.Sprintf("%s_%s_%s.deb", name, o.version, debArch[o.arch]))
	tarPath := filepath.Join(o.out, fmt.Sprintf("%s_%s_linux_%s.tar.gz", name, o.version, o.arch))
	if err := writeAtomic(debPath, o.writeDeb); err != nil {
		return fmt.Errorf("%s: %w", debPath, err)
	}
	if err := writeAtomic(tarPath, o.writeTar); err != nil {
		return fmt.Errorf("%s: %w", tarPath, err)
	}
	for _, p := range []string{debPath, tarPath} {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		fmt.Printf("%s %d bytes\n", p, st.Size())
	}
	return nil
}

// check validates the options and reads SOURCE_DATE_EPOCH.
func (o *options) check() error {
	switch {
	case o.binary == "":
		return errors.New("--binary is required")
	case o.version == "":
		return errors.New("--version is required")
	case o.arch == "":
		return errors.New("--arch is required")
	case o.out == "":
		return errors.New("--out is required")
	}
	if !debVersion.MatchString(o.version) || o.version[len(o.version)-1] == '-' {
		return fmt.Errorf("--version %q is not a Debian version: it must start with a digit and hold only letters, digits and . + ~ -", o.version)
	}
	if _, ok := debArch[o.arch]; !ok {
		return fmt.Errorf("--arch %q: want a Linux GOARCH such as amd64 or arm64", o.arch)
	}
	var err error
	if o.dynamic, err = checkBinary(o.binary, o.arch); err != nil {
		return err
	}
	if o.dynamic {
		fmt.Fprintf(os.Stderr, "packaging: %s is dynamically linked: the .deb depends on libc6 (CGO_ENABLED=0 builds a static one, as make package does)\n", o.binary)
	}
	for _, e := range entries {
		if e.src == binarySrc {
			continue
		}
		if st, err := os.Stat(filepath.Join(o.root, e.src)); err != nil {
			return fmt.Errorf("%v (is --root %q the repository root?)", err, o.root)
		} else if !st.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", filepath.Join(o.root, e.src))
		}
	}
	o.mtime = time.Now().UTC().Truncate(time.Second)
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q is not a number of seconds", s)
		}
		o.mtime = time.Unix(sec, 0).UTC()
	}
	return nil
}

// checkBinary refuses a file that is not a Linux executable for arch, so
// a package never ships a binary for another machine, and reports whether
// it is dynamically linked (it has an ELF interpreter).
func checkBinary(path, arch string) (dynamic bool, err error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, fmt.Errorf("--binary %s: not an ELF executable: %w", path, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return false, fmt.Errorf("--binary %s: ELF type %v, not an executable", path, f.Type)
	}
	if f.Machine != elfMachine[arch] {
		return false, fmt.Errorf("--binary %s is built for %v, not for --arch %s", path, f.Machine, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true, nil
		}
	}
	return false, nil
}

// src is where entry e's contents are read from.
func (o *options) src(e entry) string {
	if e.src == binarySrc {
		return o.binary
	}
	return filepath.Join(o.root, e.src)
}

// info describes the Debian package.
func (o *options) info() *nfpm.Info {
	script := func(n string) string { return filepath.Join(o.root, "packaging", "scripts", n) }
	contents := files.Contents{
		// Settings may name key files: readable by group warden only.
		{Destination: "/etc/warden", Type: files.TypeDir,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "warden", Mode: 0o750, MTime: o.mtime}},
	}
	for _, e := range entries {
		if e.deb == "" {
			continue
		}
		typ := files.TypeFile
		if e.conf {
			typ = files.TypeConfigNoReplace
		}
		group := e.group
		if group == "" {
			group = "root"
		}
		contents = append(contents, &files.Content{
			Source: o.src(e), Destination: e.deb, Type: typ,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: group, Mode: e.mode, MTime: o.mtime},
		})
	}
	var depends []string
	if o.dynamic {
		depends = []string{"libc6"}
	}
	return nfpm.WithDefaults(&nfpm.Info{
		Name:          name,
		Arch:          o.arch,
		Platform:      "linux",
		Version:       o.version,
		VersionSchema: "none", // the version is used as given, already Debian style
		Section:       "net",
		Priority:      "optional",
		Maintainer:    maintainer,
		Vendor:        vendor,
		Homepage:      homepage,
		License:       license,
		Description:   description,
		MTime:         o.mtime,
		Overridables: nfpm.Overridables{
			Depends:  depends,
			Contents: contents,
			// gzip: every dpkg reads it; nfpm's xz saved 5% at three times the time.
			Deb: nfpm.Deb{Compression: "gzip"},
			Scripts: nfpm.Scripts{
				PreInstall:  script("preinst.sh"),
				PostInstall: script("postinst.sh"),
				PreRemove:   script("prerm.sh"),
				PostRemove:  script("postrm.sh"),
			},
		},
	})
}

func (o *options) writeDeb(w io.Writer) error {
	return deb.Default.Package(o.info(), w)
}

// writeTar writes the tarball: everything under one top directory named
// like the file.
func (o *options) writeTar(w io.Writer) error {
	top := fmt.Sprintf("%s_%s_linux_%s", name, o.version, o.arch)
	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	gz.ModTime = o.mtime
	tw := tar.NewWriter(gz)
	dirs := map[string]bool{}
	var addDir func(dir string) error
	addDir = func(dir string) error {
		if dir == "." || dirs[dir] {
			return nil
		}
		if err := addDir(filepath.Dir(dir)); err != nil {
			return err
		}
		dirs[dir] = true
		return tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeDir, Name: filepath.ToSlash(filepath.Join(top, dir)) + "/",
			Mode: 0o755, ModTime: o.mtime, Uname: "root", Gname: "root", Format: tar.FormatPAX,
		})
	}
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeDir, Name: top + "/", Mode: 0o755, ModTime: o.mtime,
		Uname: "root", Gname: "root", Format: tar.FormatPAX,
	}); err != nil {
		return err
	}
	for _, e := range entries {
		if e.tar == "" {
			continue
		}
		if err := addDir(filepath.Dir(e.tar)); err != nil {
			return err
		}
		// Plain modes: whoever unpacks it owns the files and sets their own.
		mode := fs.FileMode(0o644)
		if e.mode&0o111 != 0 {
			mode = 0o755
		}
		if err := addTarFile(tw, o.src(e), filepath.ToSlash(filepath.Join(top, e.tar)), mode, o.mtime); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func addTarFile(tw *tar.Writer, src, dst string, mode fs.FileMode, mtime time.Time) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: dst, Size: st.Size(), Mode: int64(mode),
		ModTime: mtime, Uname: "root", Gname: "root", Format: tar.FormatPAX,
	}); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err == nil && n != st.Size() {
		err = fmt.Errorf("%s changed while being read", src)
	}
	return err
}

// writeAtomic writes path through a temporary file in the same directory,
// so a failed run leaves no partial artefact.
func writeAtomic(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
