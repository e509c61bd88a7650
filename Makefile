.PHONY: chaos

# A 10,000-message drain through worker processes with duplicate delivery,
# expired handles, 5xx, three SIGKILLs, a 30 s database cut and a Temporal
# server restart; prints the chaos report and fails on any loss, doubling or
# dead letter.
chaos:
	go test -tags chaos -count=1 -timeout 60m -v -run 'TestChaos$$' ./internal/chaos
