package workerapp

import (
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/syncbridge/syncbridge/activities"
	"github.com/syncbridge/syncbridge/internal/config"
)

// A versioned worker refuses (panics at registration) a workflow without a
// versioning behaviour, since deploymentOptions sets no default: this
// registers the production list on one, so a workflow added without a
// behaviour fails here rather than at a fleet's start.
func TestEveryWorkflowHasAVersioningBehaviour(t *testing.T) {
	tc, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	v := config.Versioning{Enabled: true, DeploymentName: "syncbridge", BuildID: "test"}
	w := worker.New(tc, "q", worker.Options{DeploymentOptions: deploymentOptions(v)})
	Register(w, &activities.Activities{})

	if o := deploymentOptions(config.Versioning{DeploymentName: "syncbridge", BuildID: "test"}); o.UseVersioning || o.Version != (worker.WorkerDeploymentVersion{}) {
		t.Fatalf("versioning off still sets deployment options: %+v", o)
	}
}
