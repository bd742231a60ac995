// Command imagebuild builds the OCI images of agentauth's binaries without a container daemon (`make image`):
// each is one static binary on an empty base, run as a non-root user, with no shell. The images are reproducible:
// the same binary, version, revision and SOURCE_DATE_EPOCH give the same digest. It writes an OCI image layout
// and a tarball per image, and prints each image's reference and digest.
//
//	imagebuild -out bin/images -version 0.1.0 -revision $(git rev-parse HEAD) \
//	  -repository agentauth -binary bin/image/linux_amd64/controller -binary bin/image/linux_amd64/sidecar
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

type binaries []string

func (b *binaries) String() string     { return strings.Join(*b, ",") }
func (b *binaries) Set(v string) error { *b = append(*b, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	var bins binaries
	fs.Var(&bins, "binary", "a static binary to put in an image of its own name (repeatable)")
	out := fs.String("out", "bin/images", "directory for the OCI layouts (NAME/) and tarballs (NAME.tar)")
	repository := fs.String("repository", "agentauth", "image names are REPOSITORY/NAME")
	version := fs.String("version", "", "the image tag and org.opencontainers.image.version (the chart's appVersion)")
	revision := fs.String("revision", "", "org.opencontainers.image.revision (the git commit)")
	source := fs.String("source", "", "org.opencontainers.image.source (the repository's URL), optional")
	platform := fs.String("platform", "linux/"+runtime.GOARCH, "the binaries' OS/ARCH[/VARIANT]")
	caCerts := fs.String("ca-certificates", "", "a PEM bundle of root certificates to install, optional")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(bins) == 0 || *version == "" || *revision == "" {
		return fmt.Errorf("-binary, -version and -revision are required")
	}
	created, err := sourceDateEpoch(os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return err
	}
	plat, err := v1.ParsePlatform(*platform)
	if err != nil {
		return fmt.Errorf("-platform: %w", err)
	}
	var certs []byte
	if *caCerts != "" {
		if certs, err = os.ReadFile(*caCerts); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, b := range bins {
		data, err := os.ReadFile(b)
		if err != nil {
			return err
		}
		imgName := filepath.Base(b)
		ref, err := name.NewTag(*repository + "/" + imgName + ":" + *version)
		if err != nil {
			return fmt.Errorf("image reference: %w", err)
		}
		img, err := Build(Spec{Name: imgName, Binary: data, CACerts: certs, Version: *version, Revision: *revision,
			Source: *source, Created: created, Platform: *plat})
		if err != nil {
			return err
		}
		if err := Write(img, *out, imgName, ref); err != nil {
			return err
		}
		digest, err := img.Digest()
		if err != nil {
			return err
		}
		fmt.Printf("%s@%s\t%s\n", ref.String(), digest, filepath.Join(*out, imgName+".tar"))
	}
	return nil
}

// sourceDateEpoch reads SOURCE_DATE_EPOCH (https://reproducible-builds.org/specs/source-date-epoch/); unset, the
// images carry the Unix epoch, so that builds are reproducible by default.
func sourceDateEpoch(v string) (time.Time, error) {
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	secs, err := strconv.ParseInt(v, 10, 64)
	if err != nil || secs < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a non-negative integer", v)
	}
	return time.Unix(secs, 0).UTC(), nil
}
