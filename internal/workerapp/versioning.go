package workerapp

import (
	"context"
	"log/slog"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/syncbridge/syncbridge/internal/config"
)

// deploymentOptions makes the worker a version of its Worker Deployment
// when versioning is on. Every workflow registers its own behaviour
// (workflows.Register), so no default is set: a workflow added without
// one makes a versioned worker refuse to start rather than guess.
func deploymentOptions(v config.Versioning) worker.DeploymentOptions {
	if !v.Enabled {
		return worker.DeploymentOptions{}
	}
	return worker.DeploymentOptions{
		UseVersioning: true,
		Version:       worker.WorkerDeploymentVersion{DeploymentName: v.DeploymentName, BuildID: v.BuildID},
	}
}

func versionName(v config.Versioning) string {
	if !v.Enabled {
		return "unversioned"
	}
	return v.DeploymentName + ":" + v.BuildID
}

// reportVersionRouting logs, once the server knows this version, whether
// it gets new work. A versioned worker whose build is neither current nor
// ramping only finishes executions pinned to it; on a cluster's first
// versioned deploy that is every worker, and nothing is drained until an
// operator runs `starter deploy current`: say so instead of idling quietly.
func reportVersionRouting(ctx context.Context, tc client.Client, v config.Versioning, log *slog.Logger) {
	h := tc.WorkerDeploymentClient().GetHandle(v.DeploymentName)
	// The server registers the version when the worker's first polls
	// reach matching: give it a little while.
	for attempt := 0; attempt < 30; attempt++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
		d, err := h.Describe(ctx, client.WorkerDeploymentDescribeOptions{})
		if err != nil {
			continue
		}
		known := false
		for _, s := range d.Info.VersionSummaries {
			known = known || s.Version.BuildID == v.BuildID
		}
		if !known {
			continue
		}
		rc := d.Info.RoutingConfig
		switch {
		case rc.CurrentVersion != nil && rc.CurrentVersion.BuildID == v.BuildID:
			log.Info("this build is the deployment's current version", "version", versionName(v))
		case rc.RampingVersion != nil && rc.RampingVersion.BuildID == v.BuildID:
			log.Info("this build is ramping", "version", versionName(v), "percent", rc.RampingVersionPercentage)
		case rc.CurrentVersion == nil:
			log.Warn("the deployment has no current version: new workflows go to unversioned workers only; make this build current with `starter deploy current "+v.BuildID+"`",
				"version", versionName(v))
		default:
			log.Warn("this build is neither current nor ramping: it only runs executions pinned to it; promote it with `starter deploy ramp` or `starter deploy current`",
				"version", versionName(v), "current", rc.CurrentVersion.BuildID)
		}
		return
	}
}
