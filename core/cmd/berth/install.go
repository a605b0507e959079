package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"text/template"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/atomicfile"
)

// serviceSpec is what the boot-time service runs: berth system start
// --foreground with the config file in use.
type serviceSpec struct {
	Berth  string // absolute path of the berth binary
	Config string // absolute path of config.hcl
}

// systemdUnitTemplate starts the daemon in the foreground under systemd.
// KillMode=process: stopping or restarting the daemon must not kill the
// containers' supervisors, which live on in the service's cgroup (as
// containerd's unit); Delegate=yes lets the daemon manage cgroups below it.
var systemdUnitTemplate = template.Must(template.New("unit").Parse(`# Installed by: berth system install
[Unit]
Description=Berth container engine
Documentation=https://github.com/berth-dev/berth
After=network-online.target local-fs.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={{.Berth}} --config {{.Config}} system start --foreground
ExecStop={{.Berth}} --config {{.Config}} system stop
Restart=always
RestartSec=2
KillMode=process
Delegate=yes
LimitNOFILE=infinity
LimitNPROC=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
`))

// launchdPlistTemplate runs the daemon at boot under launchd (macOS).
var launchdPlistTemplate = template.Must(template.New("plist").Funcs(template.FuncMap{"xml": xmlEscape}).Parse(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Installed by: berth system install -->
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>` + launchdLabel + `</string>
  <key>ProgramArguments</key>
  <array>
    <string>{{xml .Berth}}</string>
    <string>--config</string>
    <string>{{xml .Config}}</string>
    <string>system</string>
    <string>start</string>
    <string>--foreground</string>
  </array>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <true/>
  <key>ProcessType</key>
  <string>Interactive</string>
  <key>StandardErrorPath</key>
  <string>/var/log/berth.log</string>
</dict>
</plist>
`))

const (
	launchdLabel     = "dev.berth.berthd"
	systemdUnitPath  = "/etc/systemd/system/berth.service"
	launchdPlistPath = "/Library/LaunchDaemons/" + launchdLabel + ".plist"
)

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// serviceFile renders the boot-time service of goos ("linux": a systemd
// unit, "darwin": a launchd plist) and its default install path.
func serviceFile(goos string, spec serviceSpec) (text, path string, err error) {
	var tmpl *template.Template
	switch goos {
	case "linux":
		tmpl, path = systemdUnitTemplate, systemdUnitPath
		// systemd splits ExecStart on spaces; such paths need quoting.
		if strings.ContainsAny(spec.Berth+spec.Config, " \t\"'\\") {
			return "", "", fmt.Errorf("paths with spaces or quotes are not supported in the systemd unit: %q, %q", spec.Berth, spec.Config)
		}
	case "darwin":
		tmpl, path = launchdPlistTemplate, launchdPlistPath
	default:
		return "", "", fmt.Errorf("berth system install supports linux (systemd) and darwin (launchd), not %s", goos)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, spec); err != nil {
		return "", "", err
	}
	return b.String(), path, nil
}

func newSystemInstallCommand(g *globals) *cobra.Command {
	var printOnly, noEnable bool
	var dest string
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Start the daemon at boot: a systemd unit (Linux) or a launchd plist (macOS)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfgPath, err := g.configPath()
			if err != nil {
				return err
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			if exe, err = filepath.EvalSymlinks(exe); err != nil {
				return err
			}
			text, path, err := serviceFile(runtime.GOOS, serviceSpec{Berth: exe, Config: cfgPath})
			if err != nil {
				return err
			}
			if printOnly {
				fmt.Print(text)
				return nil
			}
			if dest != "" {
				path = dest
			}
			if err := atomicfile.WriteFile(path, []byte(text), 0o644); err != nil {
				return err
			}
			fmt.Println("wrote", path)
			if noEnable || dest != "" {
				return nil
			}
			return enableService(runtime.GOOS, path)
		},
	}
	cmd.Flags().BoolVar(&printOnly, "print", false, "print the unit or plist instead of installing it")
	cmd.Flags().StringVar(&dest, "dest", "", "write it here instead (and do not enable it)")
	cmd.Flags().BoolVar(&noEnable, "no-enable", false, "write it but do not enable it")
	return cmd
}

// enableService asks the service manager to start the installed service at
// boot and now.
func enableService(goos, path string) error {
	var steps [][]string
	switch goos {
	case "linux":
		steps = [][]string{{"systemctl", "daemon-reload"}, {"systemctl", "enable", "--now", filepath.Base(path)}}
	case "darwin":
		steps = [][]string{{"launchctl", "bootstrap", "system", path}}
	}
	for _, s := range steps {
		out, err := exec.Command(s[0], s[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s (the file is written; enable it yourself or rerun with --no-enable)", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	fmt.Println("enabled: the daemon starts at boot")
	return nil
}
