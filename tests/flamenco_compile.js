// Compiles a job with a Flamenco job-type script, the way Flamenco Manager does it, and prints
// the tasks as JSON: node flamenco_compile.js SCRIPT.js '{"setting": value, ...}'
// Stand-ins for the Manager's script API: author.Task / author.Command / task.addCommand,
// job.addTask, print; the job's settings start from JOB_TYPE's defaults, as the Manager's do.
"use strict";

const fs = require("fs");
const vm = require("vm");

const [script, settingsJson] = process.argv.slice(2);
const tasks = [];
const context = {
    author: {
        Task: (name, type) => {
            const task = { name, type, commands: [], addCommand: (command) => task.commands.push(command) };
            return task;
        },
        Command: (name, parameters) => ({ name, parameters }),
    },
    print: (...parts) => process.stderr.write(parts.join(" ") + "\n"),
};
vm.createContext(context);
vm.runInContext(fs.readFileSync(script, "utf8") + "\nthis.jobType = JOB_TYPE;", context, { filename: script });

const settings = {};
for (const setting of context.jobType.settings) {
    if ("default" in setting) {
        settings[setting.key] = setting.default;
    }
}
Object.assign(settings, JSON.parse(settingsJson));
try {
    context.compileJob({ settings, addTask: (task) => tasks.push(task) });
} catch (error) {
    process.stderr.write(`${error}\n`);
    process.exit(1);
}
const plain = tasks.map(({ name, type, commands }) => ({ name, type, commands }));
process.stdout.write(JSON.stringify({ label: context.jobType.label, tasks: plain }) + "\n");
