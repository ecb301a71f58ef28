// compose-check loads a Compose file the way `docker compose` does (compose-go: interpolation
// from the environment and the env files, .env in the project directory by default, the Compose
// Specification's JSON schema, profiles or COMPOSE_PROFILES, references between services,
// networks and volumes, each service's env_file merged into its environment) and prints the
// resolved project as JSON, or the loader's error and exit status 1. Used by
// scripts/deploy-check.sh, where no Docker engine exists to run `docker compose config`.
//
//	compose-check [-project-directory DIR] [-env-file FILE]... [-profile NAME]... compose.yaml
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var envFiles, profiles list
	projectDir := flag.String("project-directory", "", "the project directory (default: the file's)")
	flag.Var(&envFiles, "env-file", "an environment file, as `docker compose --env-file` (repeatable)")
	flag.Var(&profiles, "profile", "a profile to enable (repeatable)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: compose-check [-project-directory DIR] [-env-file FILE]... [-profile NAME]... compose.yaml")
		os.Exit(2)
	}
	options, err := cli.NewProjectOptions(
		[]string{flag.Arg(0)},
		cli.WithWorkingDirectory(*projectDir),
		cli.WithOsEnv,
		cli.WithEnvFiles(envFiles...),
		cli.WithDotEnv,
		cli.WithDefaultProfiles(profiles...),
		cli.WithConsistency(true),
	)
	if err != nil {
		fail(err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	project, err = project.WithServicesEnvironmentResolved(false)
	if err != nil {
		fail(err)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fail(err)
	}
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "compose-check:", err)
	os.Exit(1)
}
