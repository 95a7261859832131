// Package config loads and validates procon-cdc's YAML configuration.
package config
