/**
 * nbcache's state on every code cell, in JupyterLab 4 and Notebook 7.
 */

import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';

import { CellStates } from './panel';

const RUN_STALE = 'nbcache:run-stale';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbcache:cell-states',
  description: "The cache's state on every code cell, and a command to run the stale ones.",
  autoStart: true,
  requires: [INotebookTracker],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker) => {
    const states = new WeakMap<NotebookPanel, CellStates>();
    tracker.widgetAdded.connect((_, panel) => {
      states.set(panel, new CellStates(panel));
    });
    app.commands.addCommand(RUN_STALE, {
      label: 'Run Stale Cells',
      caption: 'Run the cells nbcache marked stale, top to bottom',
      isEnabled: () => {
        const panel = tracker.currentWidget;
        return !!panel && (states.get(panel)?.staleCount ?? 0) > 0;
      },
      execute: async () => {
        const panel = tracker.currentWidget;
        if (panel) {
          await states.get(panel)?.runStale();
        }
      }
    });
  }
};

export default plugin;
