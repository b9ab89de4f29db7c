package hostsetup

import (
	"os"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestWriteContainersConf(t *testing.T) {
	for _, subnet := range []string{"", "10.244.7.0/24"} {
		path, err := WriteContainersConf(t.TempDir(), subnet)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var conf struct {
			Containers struct {
				DefaultUlimits []string `toml:"default_ulimits"`
			}
			Engine struct {
				Runtime string
			}
			Network struct {
				DefaultSubnet string `toml:"default_subnet"`
			}
		}
		if _, err := toml.Decode(string(data), &conf); err != nil {
			t.Fatalf("subnet %q: containers.conf is not valid TOML: %v\n%s", subnet, err, data)
		}
		if conf.Engine.Runtime != "runc" || len(conf.Containers.DefaultUlimits) != 2 || conf.Network.DefaultSubnet != subnet {
			t.Fatalf("subnet %q: decoded %+v", subnet, conf)
		}
	}
}
