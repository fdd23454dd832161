"""What a run tells people: the run summary, its Prefect artifact, the console rendering. May import every library
package below it (not tasks, flows or cli)."""
